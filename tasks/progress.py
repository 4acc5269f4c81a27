"""Progress reporting that the plain stage functions accept without knowing who listens.

A stage calls `progress(done, total, message)`; the Prefect task wrappers pass a reporter that
updates a progress artifact in the UI (flows/artifacts.py), the CLI passes a Rich progress bar.
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[int, int, str], None]


def no_progress(_done: int, _total: int, _message: str) -> None:
    return None
