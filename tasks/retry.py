"""Retry policy for I/O tasks: retry what may pass next time, never a user's mistake."""

from __future__ import annotations

from typing import Any

from storage.errors import DraftflowError


def retry_unless_user_error(_task: Any, _task_run: Any, state: Any) -> bool:
    """Prefect `retry_condition_fn`: a DraftflowError (bad path, empty corpus) fails at once."""
    return not isinstance(getattr(state, "data", None), DraftflowError)
