"""The runs behind the CLI (compare, stress, akd, bench, sequential), result records and
report rendering. The only place that combines editors, data and metrics.

Owns: the harness (`harness`: single / batch / sequential runs of any editor), what it scores
(`scoring`, `aggregate`), the cached unedited references (`baseline`, `heldout`), result
records (`records`), edit sets and provenance (`edit_sets`, `environment`), the unedited
baseline editor (`identity`), editor discovery (`discovery`), tables (`tables`), saved edits and answers for `ask`
(`saved_edits`, `answers`), CLI commands (`commands`) and the scripts not yet turned into commands (`scripts`). Must not touch: editor internals (only the
`Editor` / `Applied` seam), model weights other than through an editor, benchmark files.
"""
