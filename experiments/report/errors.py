"""The report package's one error type (a `UsageError`: the CLI exits 2 with its sentence)."""

from lm.errors import UsageError


class ReportError(UsageError):
    """A report is missing or malformed; one sentence names the file or field and the fault."""
