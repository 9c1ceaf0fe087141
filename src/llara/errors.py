"""The one exception type the command line turns into a clean one-line error."""


class LlaraError(Exception):
    """A user-facing error: bad input, missing file, inconsistent checkpoint.

    The message must say what was wrong (file, row, field) and, where possible, what to do. The CLI
    prints it on one line and exits non-zero; ``--debug`` shows the traceback.
    """
