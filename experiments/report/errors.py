"""The report package's one error type (the CLI maps every ValueError to exit code 2)."""


class ReportError(ValueError):
    """A report is missing or malformed; one sentence names the file or field and the fault."""
