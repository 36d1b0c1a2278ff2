"""The ground station: typer CLI, Textual console, SSH fleet and the local emulated cluster."""
