"""Sign-in rate limiting and temporary lockout, per account name and per client address.

Every attempt that is not refused outright is written to `sign_in_failures` before the password is
checked (a success deletes it again), so the limit holds across desk processes and concurrent
attempts cannot all slip in before the first one is counted. A name, or an address, is locked
once its last LIMIT failures fall within WINDOW; the lock lasts LOCKOUT from the last of them.
While locked, attempts are refused without checking the password and are not counted, so the
lock ends on time and an attacker gets at most LIMIT guesses per name every LOCKOUT.

Failures are recorded for any name typed, existing or not: the limit tells nobody which names exist.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from storage.db import Database
from storage.models import SignInFailure, utcnow

log = logging.getLogger(__name__)

WINDOW = timedelta(minutes=15)  # failures further apart than this do not add up to a lock
LOCKOUT = timedelta(minutes=15)  # how long a lock lasts, from the failure that set it
NAME_LIMIT = 5  # failures of one account name within WINDOW: a guessing attack on one account
ADDRESS_LIMIT = 20  # failures from one client address within WINDOW: one client trying many names
NAME_CHARS = 100  # the columns' widths: longer input is cut, never an error
ADDRESS_CHARS = 64
UNKNOWN_ADDRESS = "unknown"  # no client address (a test client, a Unix socket)


@dataclass(frozen=True)
class Lock:
    """Why sign-in is refused for now, and until when."""

    by: str  # "name" or "address"
    until: datetime

    def minutes_left(self, now: datetime | None = None) -> int:
        seconds = (self.until - (now or utcnow())).total_seconds()
        return max(1, math.ceil(seconds / 60))


def begin_attempt(db: Database, name: str, address: str | None) -> Lock | None:
    """The lock that refuses this attempt, or None: then the attempt counts as a failure until it succeeds."""
    name, address = _key(name, address)
    now = utcnow()
    with db.transaction() as session:
        lock = _either_lock(session, name, address, now)
        if lock is not None:
            return lock
        # What can no longer count towards a lock goes: the table stays as small as the attacks on it.
        stale = now - WINDOW - LOCKOUT
        session.execute(delete(SignInFailure).where(SignInFailure.name == name, SignInFailure.at < stale))
        session.execute(delete(SignInFailure).where(SignInFailure.address == address, SignInFailure.at < stale))
        session.add(SignInFailure(name=name, address=address, at=now))
        return None


def failed(db: Database, name: str, address: str | None) -> Lock | None:
    """After a wrong password: the lock this failure set off (logged), or None."""
    name, address = _key(name, address)
    now = utcnow()
    with db.session() as session:
        lock = _either_lock(session, name, address, now)
    if lock is not None:
        log.warning(
            "sign-in locked by %s for %d minutes after repeated failures: name %r, address %s",
            lock.by,
            lock.minutes_left(now),
            name,
            address,
        )
    return lock


def succeeded(db: Database, name: str) -> None:
    """A right password: the name's failures were typos, forget them (and every expired failure)."""
    name, _ = _key(name, None)
    with db.transaction() as session:
        session.execute(delete(SignInFailure).where(SignInFailure.name == name))
        session.execute(delete(SignInFailure).where(SignInFailure.at < utcnow() - WINDOW - LOCKOUT))


def _either_lock(session: Session, name: str, address: str, now: datetime) -> Lock | None:
    """The name's lock, else the address's, else None."""
    return _lock(session, SignInFailure.name, name, NAME_LIMIT, now, "name") or _lock(
        session, SignInFailure.address, address, ADDRESS_LIMIT, now, "address"
    )


def _lock(
    session: Session, column: InstrumentedAttribute[str], value: str, limit: int, now: datetime, by: str
) -> Lock | None:
    # The last `limit` failures, newest first: one range scan of the (name, at) or (address, at) index.
    times = [
        _utc(at)
        for at in session.scalars(
            select(SignInFailure.at).where(column == value).order_by(SignInFailure.at.desc()).limit(limit)
        )
    ]
    if len(times) < limit or times[0] - times[-1] > WINDOW:
        return None
    until = times[0] + LOCKOUT
    return Lock(by=by, until=until) if until > now else None


def _key(name: str, address: str | None) -> tuple[str, str]:
    return name[:NAME_CHARS], (address or UNKNOWN_ADDRESS)[:ADDRESS_CHARS]


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
