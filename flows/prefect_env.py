"""Prefect settings for an offline box, applied before Prefect is imported.

Users can override any of them in the environment; we only fill in what is unset.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime

OFFLINE_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    # the ephemeral server's cold start took ~20 s on 2 cores; the default timeout is too tight
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    # our stage loggers ("draftflow.*") show up in flow-run logs and the UI
    "PREFECT_LOGGING_EXTRA_LOGGERS": "draftflow",
    # stage commands run outside a flow: their logs go to the console only, without a warning
    "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
}


def configure_prefect_env() -> None:
    for key, value in OFFLINE_DEFAULTS.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    from storage.settings import Settings

    logging.getLogger("draftflow").setLevel(Settings().log_level)
    from flows.logs import configure_logging

    configure_logging()


class _HideUserErrorTracebacks(logging.Filter):
    """A user error (bad path, empty corpus) is one readable line, not a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        from storage.errors import DraftflowError

        if record.exc_info and isinstance(record.exc_info[1], DraftflowError):
            record.exc_info, record.exc_text = None, None
        return True


def hide_user_error_tracebacks() -> None:
    """Strip tracebacks of DraftflowError from Prefect's console output (the UI keeps them)."""
    from prefect.logging.handlers import PrefectConsoleHandler

    for handler in logging.getLogger().handlers:
        if isinstance(handler, PrefectConsoleHandler) and not any(
            isinstance(f, _HideUserErrorTracebacks) for f in handler.filters
        ):
            handler.addFilter(_HideUserErrorTracebacks())


def run_name(kind: str) -> Callable[[], str]:
    """A readable flow-run name, e.g. `nightly-2026-12-02-0200` (UTC), instead of Prefect's random pair."""

    def name() -> str:
        return f"{kind}-{datetime.now(UTC):%Y-%m-%d-%H%M}"

    return name
