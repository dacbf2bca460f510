"""The harness's own usage error.

Bad input reaches the harness as one of several `lm.errors.UsageError` subclasses, each with
a one-sentence message: `data.benchmarks.BenchmarkError` (unknown benchmark, unreadable file,
record missing a field), `data.batches.BatchError` (more edits asked for than the split
holds), `data.requests.EditRequestError` (a request that cannot be edited) and
`HarnessError` below (batch sizes and settings). The CLI maps `UsageError` to exit code 2.
"""

from lm.errors import UsageError


class HarnessError(UsageError):
    """A harness run was asked for something impossible (one sentence says what)."""
