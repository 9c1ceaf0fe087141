"""The one exception type the command line turns into a clean one-line error."""


class LlaraError(Exception):
    """A user-facing error: bad input, missing file, inconsistent checkpoint.

    The message must say what was wrong (file, row, field) and, where possible, what to do. The CLI
    prints it on one line and exits non-zero; ``--debug`` shows the traceback.
    """


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message (its type name when it has none), for quoting a library's error
    inside a one-line :class:`LlaraError`."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
