"""The project's own error for what a user causes and can fix.

`cli.main` prints a `UserError` (and a ValueError or OSError: a bad value, a missing file) as one
line; any other exception, a RuntimeError of torch or ONNX Runtime included, is a bug and keeps its
traceback. A subclass of RuntimeError, so code that catches that still catches it.
"""


class UserError(RuntimeError):
    """A condition outside the code (no daemon answering, a port taken, no GPU): its message says
    what to do."""
