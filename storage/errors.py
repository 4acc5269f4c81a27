"""Errors a user can cause and fix. The CLI prints them as one line, without a traceback."""


class DraftflowError(Exception):
    """A user-facing error: the message names the thing and, where possible, the fix."""


class NotFoundError(DraftflowError):
    """A draft, model version or dataset that was asked for does not exist."""


class TransitionError(DraftflowError):
    """A review action that the draft's current status does not allow."""


class ConflictError(DraftflowError):
    """A write based on a stale version of a record."""


def first_line(exc: BaseException) -> str:
    """An exception's message as one line (its first), or its type's name when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
