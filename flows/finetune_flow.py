"""Fine-tuning as its own flow, so it can be deployed to a GPU work pool and started alone.

It trains on the latest tokenized corpus of the data home; the nightly flow runs the same task
in-process on one box.
"""

from __future__ import annotations

import uuid
from typing import Any

from prefect import flow
from prefect.runtime import flow_run
from pydantic import Field

from flows.prefect_env import run_name
from flows.prefect_tasks import fine_tune, training_timeout
from flows.run_guards import start_flow, user_errors_not_retried, writer_slot
from storage.db import open_database
from storage.params import Params
from storage.refs import ModelRef
from storage.runs import finish_run, start_run
from tasks.models import resolve_base_model
from tasks.tokenize.stage import latest_tokens
from tasks.train.params import TrainParams


class FinetuneParams(Params):
    base_model: str | None = Field(
        None,
        description="Empty: continue from the latest version; or 'scratch', "
        "a version (v0003), a local folder or a hub id.",
    )
    home: str | None = Field(None, description="Data home; empty = DRAFTFLOW_HOME or ~/.draftflow.")
    training: TrainParams = Field(default_factory=TrainParams)


@flow(
    name="draftflow-finetune",
    description="Fine-tune on the latest tokenized corpus and register a version.",
    flow_run_name=run_name("finetune"),
    retries=1,  # a retry resumes from the run's checkpoint and registers at most one version per run id
    retry_delay_seconds=120,
)
def finetune_flow(params: FinetuneParams | None = None, overrides: dict[str, Any] | None = None) -> ModelRef:
    with user_errors_not_retried():
        params, settings = start_flow(params or FinetuneParams(), overrides)
        db = open_database(settings.database_url)
        run_id = flow_run.get_id() or uuid.uuid4().hex  # a retried flow run keeps its id: training resumes
        start_run(db, run_id, "finetune", params.model_dump(mode="json"), prefect_flow_run_id=flow_run.get_id())
        try:
            with writer_slot():  # started alone from a deployment; under a night, the night holds it
                model = fine_tune.with_options(timeout_seconds=training_timeout(params.training.max_minutes))(
                    latest_tokens(settings),
                    resolve_base_model(params.base_model, db),
                    params.training,
                    settings,
                    run_id,
                )
        except BaseException as exc:
            finish_run(db, run_id, "failed", error=f"{type(exc).__name__}: {exc}")
            raise
    finish_run(db, run_id, "completed", summary=model.model_dump())
    return model
