"""The one exception type for the user's mistakes.

editscope splits failures in two. A `UsageError` means the user asked for something this
program cannot do as given (an unknown benchmark, a damaged model folder, an unwritable
reports folder, a prompt longer than the model's context, ...): its message is one sentence
that names the input and says what to change, and the command line prints it and exits 2.
Anything else that escapes is a bug: the command line lets it show its traceback (exit 1).

Each package's own user errors subclass it (`data.benchmarks.BenchmarkError`,
`editors.protocol.EditError`, ...). It is a `ValueError` so that library callers who
caught the older `ValueError` subclasses keep working; the command line never catches plain
`ValueError`. This module imports nothing, so every layer may raise it.
"""


class UsageError(ValueError):
    """The user's input cannot be used as given; the message is one sentence saying why."""
