"""Errors a user can act on: the CLI prints them as one line (no traceback) and exits 2."""


class ForgetflowError(Exception):
    """A user-facing error: names the thing, what was expected, and what happened to the data."""
