"""Model access: loading (embedded default, any HF causal LM), architecture adapters chosen by
`config.model_type`, named hooks, token positions, and the plain-model scorer.

Must not touch: editing algorithms, benchmarks, reports.
"""
