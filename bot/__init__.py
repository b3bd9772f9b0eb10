"""The signoff application: composition root, runtime, scheduler wiring and the CLI."""
