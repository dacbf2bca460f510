"""Model access: loading (embedded default, any HF causal LM), architecture adapters chosen by
`config.model_type`, named hooks, token positions, the plain-model scorer, and cache files
(including memos of facts about a model folder, void once any of its files changes).

Must not touch: editing algorithms, benchmarks, reports.
"""
