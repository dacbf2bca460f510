"""Benchmarks shipped with the project, their loaders, batch builders and the batch validator.

Owns: the benchmark and corpus files under `data/files/`, turning records into `EditRequest`s.
Must not touch: models, editors, metrics.

requests    EditRequest, LocalityProbe: the record loaders build and editors consume
benchmarks  load_benchmark, BENCHMARKS (names, splits, formats), BenchmarkError
formats     how each published record layout maps onto EditRequest
canonical   editscope's own layout (JSON Schema in data/schema/), both directions
field_maps  --fields: any other layout read as canonical records
corpus      corpus_text / corpus_file_text (WikiText-2 valid for statistics, test held out)
relations   relation inference for CounterFact, which carries no relation id
batches     seeded random, same-/distinct-subject and natural-group batches
validation  validate_batch: locality overlaps and contradictory edits within a batch
pack        `python -m data.pack SHARED_DIR` rebuilds data/files/ reproducibly
"""
