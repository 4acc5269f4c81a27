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


def environment_error(exc: BaseException) -> str | None:
    """One line for what the machine, not the user's input, refused: a full disk, a read-only or
    forbidden folder, a database that cannot be reached. None when `exc` is none of those. A
    database URL in the message never shows its password."""
    import errno

    if isinstance(exc, OSError):
        where = f" '{exc.filename}'" if exc.filename else ""
        if exc.errno == errno.ENOSPC:
            writing = f" (writing{where})" if where else ""
            return f"the disk is full{writing}: free some space, or point DRAFTFLOW_HOME at a larger disk"
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            return (
                f"cannot write{where}: {exc.strerror or 'permission denied'}; point DRAFTFLOW_HOME "
                "(or --home) at a folder you can write to"
            )
        return f"{exc.strerror or type(exc).__name__}{where}"
    text = str(exc)
    if "No space left on device" in text:  # Rust libraries (tokenizers, safetensors) raise plain errors
        return "the disk is full: free some space, or point DRAFTFLOW_HOME at a larger disk"
    if "Read-only file system" in text:
        return "cannot write: read-only file system; point DRAFTFLOW_HOME (or --home) at a folder you can write to"
    from sqlalchemy.exc import OperationalError

    if isinstance(exc, OperationalError):
        reason = first_line(exc.orig) if exc.orig is not None else first_line(exc)
        lower = reason.lower()
        if "disk is full" in lower:
            return "the disk is full (writing the database): free some space, or point DRAFTFLOW_HOME at a larger disk"
        if "readonly" in lower or "read-only" in lower or "unable to open database file" in lower:
            return (
                f"cannot write the database ({reason}): point DRAFTFLOW_HOME (or --home) at a folder you can write to"
            )
        return f"cannot reach the database ({reason}): is the server running, and is DRAFTFLOW_DATABASE_URL right?"
    return None


def hide_password(url: str) -> str:
    """A database URL as it may be printed: the password masked."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:  # not a URL SQLAlchemy can read: mask what looks like user:password@
        import re

        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)
