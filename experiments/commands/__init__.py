"""Click commands of the `editscope` CLI, one module per command; `cli.py` assembles the group."""
