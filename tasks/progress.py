"""Progress reporting that the plain stage functions accept without knowing who listens.

A stage calls `progress(done, total, message)`; the Prefect task wrappers pass a reporter that
updates a progress artifact in the UI, the CLI passes a Rich progress bar.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from uuid import UUID

Progress = Callable[[int, int, str], None]


def no_progress(_done: int, _total: int, _message: str) -> None:
    return None


class PrefectProgress:
    """Create a progress artifact on first call and update it at most every `interval_s`."""

    def __init__(self, key: str, description: str, interval_s: float = 2.0) -> None:
        self.key, self.description, self.interval_s = key, description, interval_s
        self._artifact: UUID | None = None
        self._last = 0.0

    def __call__(self, done: int, total: int, message: str) -> None:
        from prefect.artifacts import create_progress_artifact, update_progress_artifact

        now = time.monotonic()
        percent = min(100.0, 100.0 * done / total) if total else 100.0
        if self._artifact is None:
            self._artifact = create_progress_artifact(percent, key=self.key, description=self.description)
        elif now - self._last >= self.interval_s or done >= total:
            update_progress_artifact(self._artifact, percent, description=f"{self.description}: {message}")
        else:
            return
        self._last = now
