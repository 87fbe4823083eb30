"""The one exception type users see.

Anything raised as :class:`EdgecompError` is bad input or a refused operation: the CLI prints its
message as one line on stderr and exits with status 2, without a traceback. Every other exception is
a bug and keeps its traceback.
"""


class EdgecompError(Exception):
    """A user-facing error: the message must say what is wrong and, where possible, what to do."""
