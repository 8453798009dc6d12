"""The `quorum-sms` subcommands: each module parses its arguments, calls one function below
it (the orchestrator, ops, warehouse) and prints. Nothing below imports this package."""
