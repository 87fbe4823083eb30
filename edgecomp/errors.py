"""The one exception type users see.

Anything raised as :class:`EdgecompError` is bad input or a refused operation: the CLI prints its
message as one line on stderr and exits with status 2, without a traceback. Every other exception is
a bug and keeps its traceback.
"""


class EdgecompError(Exception):
    """A user-facing error: the message must say what is wrong and, where possible, what to do."""


def first_line(error: BaseException, limit: int = 300) -> str:
    """A library exception's first line (its name when it has no text), for a one-line reason."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:limit]
