"""The `litesrl` headless command line (typer); every console action has a command here."""
