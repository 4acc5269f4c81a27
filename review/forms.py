"""Reading numbers from query strings and forms: a bad value is a readable 400, never a 500."""

from __future__ import annotations

from storage.errors import DraftflowError

LARGEST = 2**62  # past a 64-bit column the database driver itself would fail


def parse_int(value: str | None, what: str) -> int | None:
    """The whole number in `value`, None when empty; DraftflowError names `what` otherwise."""
    if value is None or value.strip() == "":
        return None
    try:
        number = int(value)
    except ValueError:
        number = None
    if number is None or abs(number) > LARGEST:
        raise DraftflowError(f"bad {what} {value[:40]!r}: expected a whole number")
    return number
