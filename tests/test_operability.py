"""Operability: JSON log lines that carry the flow run id."""

from __future__ import annotations

import json
import logging

import pytest
from prefect import flow

from flows.logs import JsonFormatter, configure_logging


@flow(name="log-probe")
def log_probe() -> str:
    from prefect.runtime import flow_run

    logging.getLogger("draftflow.probe").info("inside the %s", "flow")
    return flow_run.get_id()


def test_json_logs_carry_the_flow_run_id(
    prefect_harness: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DRAFTFLOW_LOG_FORMAT", "json")
    logger = logging.getLogger("draftflow")
    configure_logging()
    configure_logging()  # idempotent: one handler, not two
    handlers = [h for h in logger.handlers if isinstance(h.formatter, JsonFormatter)]
    try:
        assert len(handlers) == 1
        run_id = log_probe()
        lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
        (entry,) = [e for e in lines if e["logger"] == "draftflow.probe"]
        assert entry["message"] == "inside the flow" and entry["level"] == "INFO"
        assert entry["run_id"] == run_id and entry["flow_run"]
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
