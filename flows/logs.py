"""Structured logs: with `DRAFTFLOW_LOG_FORMAT=json`, every `draftflow.*` record is one JSON line
on stderr carrying the flow run id, so a log shipper can group a night's lines and a scheduler's
alert can point at the run. (Prefect's own console and API logs are unchanged.)"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any


def run_ids() -> dict[str, str | None]:
    """The current flow and task run, when there is one (outside Prefect: None)."""
    try:
        from prefect.runtime import flow_run, task_run

        return {"run_id": flow_run.get_id(), "flow_run": flow_run.get_name(), "task_run": task_run.get_name()}
    except Exception:  # logging must never fail because Prefect's runtime context is absent
        return {"run_id": None, "flow_run": None, "task_run": None}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **run_ids(),
        }
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class StderrHandler(logging.StreamHandler):
    """A handler that writes to whatever `sys.stderr` is when a record comes, not the stream it was
    created with: a process that redirects stderr later (a test's capture, a wrapper) still gets
    its lines, and a closed earlier stream is never written to."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass  # StreamHandler.__init__ and setStream assign it; the current stderr always wins


def configure_logging() -> None:
    """Install the JSON handler on the `draftflow` logger when asked for (idempotent)."""
    from storage.settings import Settings

    if Settings().log_format != "json":
        return
    logger = logging.getLogger("draftflow")
    if any(isinstance(h.formatter, JsonFormatter) for h in logger.handlers):
        return
    handler = StderrHandler()
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)


def stderr_logging() -> None:
    """Stage logs on stderr for the stage commands, which run without Prefect (and its log handlers)."""
    logger = logging.getLogger("draftflow")
    if logger.handlers:
        return
    handler = StderrHandler()
    handler.setFormatter(
        logging.Formatter("%(asctime)s.%(msecs)03d | %(levelname)-7s | %(name)s - %(message)s", datefmt="%H:%M:%S")
    )
    logger.addHandler(handler)
