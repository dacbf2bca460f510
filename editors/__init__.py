"""Knowledge editors and the one seam they all implement.

Owns: the `Editor` / `Applied` protocol (the `EditRequest` record lives in `data.requests`), and the locate-then-edit
editors (MEMIT, PMET, MEMIT-Merge, AlphaEdit, FT-L). Must not touch: benchmark files, metrics,
report rendering. Retrieval editors live in `retrieval/` and implement the same protocol.
"""
