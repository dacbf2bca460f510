"""Key second-moment statistics for locate-then-edit editors.

Owns: collecting sum(k k^T) at the input of MLP output projections (all requested layers in one
truncated forward pass), the content-addressed cache with resumable partial sums, cache hits
answered without loading the model (`cache_hit`), and the torchrun shard/all-reduce. Must not
touch: editing, scoring.
"""
