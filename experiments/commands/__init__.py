"""Click commands of the `editscope` CLI, one module per command; `cli.py` lists them for a
`LazyGroup` (`lazy_group`), which imports a command's module only when it is used."""
