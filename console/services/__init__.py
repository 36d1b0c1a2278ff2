"""Console services with no UI, shared by the Textual app and the CLI: fleet backends, node store, training runs, plans."""
