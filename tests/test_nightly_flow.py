"""The whole nightly flow under a real Prefect server (prefect_test_harness), and `draftflow run`."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from flows.nightly import nightly
from storage.db import open_database
from storage.errors import DraftflowError
from storage.models import Draft, ModelVersion, Run, utcnow
from storage.parquet_store import count_rows
from storage.settings import Settings
from tasks.clean.params import CleanParams
from tasks.clean.steps import STEPS as CLEAN_STEPS
from tests.tiny import GENERATE, TOKENIZE, nightly_params

pytestmark = pytest.mark.slow


def test_nightly_runs_all_six_stages_and_the_next_night_continues(
    prefect_harness: None, settings: Settings, corpus_dir: Path, prompts_file: Path, tmp_path: Path
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    (corpus_dir / "broken.jsonl").write_text('{"text": "fine line of text for the corpus"}\n{oops\n')
    params = nightly_params(str(corpus_dir), str(prompts_file), str(settings.home))
    first = nightly(params)

    assert first.documents_ingested == 42 == first.documents_kept + first.documents_rejected
    assert first.rejected_by_reason["bad_json"] == 1
    assert first.files == {"new": 23, "changed": 0, "unchanged": 0, "removed": 0}
    assert [s["step"] for s in first.clean_steps] == list(CLEAN_STEPS)
    assert count_rows(settings.clean_dir) == first.documents_kept
    assert first.base_model == "scratch" and first.model_version == "v0001"
    assert first.train_steps == params.training.max_steps
    expected = 3 * GENERATE.samples_per_prompt
    assert first.drafts_generated == first.drafts_queued == expected
    assert first.queue == {"pending": expected}
    assert list(first.seconds) == [
        "recover",
        "sweep_leases",
        "editor_feedback",
        "ingest",
        "clean",
        "tokenize",
        "fine_tune",
        "preference_tune",
        "evaluate",
        "generate",
        "queue_for_review",
    ]
    assert first.editor_approved_source is None and first.leases_expired == 0
    # evaluated on the home's fixed set, which the first night made; the drafts came from v0001
    assert set(first.evaluation) == {"v0001"} and first.evaluation["v0001"]["bits_per_byte"] > 0
    assert first.evaluation["v0001"]["drafts"] == 3 * 2 and first.drafts_model_version == "v0001"
    assert first.preference["skipped"].startswith("preference tuning skipped: 0 new preference pairs")
    assert first.recovered == {"crashed_runs": [], "debris": [], "drafts_queued": 0}  # nothing to recover

    db = open_database(settings.database_url)
    with db.session() as s:
        run = s.get(Run, first.run_id)
        assert run.status == "completed" and run.kind == "nightly"
        assert run.prefect_flow_run_id == first.run_id
        assert run.summary["drafts_queued"] == expected and run.corpus_fingerprint == first.corpus_fingerprint
        assert {d.status for d in s.scalars(sa.select(Draft))} == {"pending"}
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(first.run_id).name.startswith("nightly-20")  # readable: nightly-YYYY-MM-DD-HHMM
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["nightly-summary"]))
        )
        assert any("Documents ingested | 42" in (a.data or "") for a in artifacts)
        report = next(a.data for a in artifacts if "Documents ingested | 42" in (a.data or ""))
        assert "## Review queue" in report and f"| pending | {expected} |" in report
        samples = report.split("## Sample drafts")[1]
        assert samples.count("\n| ") >= 2 and "](" not in samples  # a table of drafts, no links
        (steps_table, *_) = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["clean-steps"]))
        )
        assert steps_table.type == "table" and "near_dedup" in str(steps_table.data)
        progress = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["fine-tune-progress", "generate-progress"]))
        )
        assert {a.key for a in progress} == {"fine-tune-progress", "generate-progress"}
        assert all(a.type == "progress" and a.data == 100 for a in progress)

        def by_key(key: str) -> list[Any]:
            return client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))

        assert "data:image/png;base64," in by_key("fine-tune-loss-curve")[0].data
        assert "perplexity" in str(by_key("fine-tune-metrics")[0].data)
        # the harness is shared by the session: other tests' nights published this key too
        (evaluated,) = [a for a in by_key("model-v0001-evaluation") if str(a.flow_run_id) == first.run_id]
        assert (
            evaluated.type == "table" and "bits_per_byte" in str(evaluated.data) and "repetition" in str(evaluated.data)
        )

    # Editors work between the nights: one draft edited and approved, one claim left to expire.
    from tasks.review import actions as editor

    approved, abandoned = (editor.claim(db, name).id for name in ("ann", "bob"))
    editor.edit(db, approved, "ann", "An editor's own sentence about the module returning a value for each key.")
    editor.approve(db, approved, "ann")
    with db.transaction() as s:
        s.execute(sa.update(Draft).where(Draft.id == abandoned).values(lease_expires_at=utcnow() - timedelta(1)))

    second = nightly(params)  # no base model given: continue from the latest version
    assert second.leases_expired == 1  # bob's claim went back to the queue first
    assert second.editor_approved_source and second.editor_approved_source.startswith("editor-approved=")
    assert second.files == {"new": 1, "changed": 0, "unchanged": 23, "removed": 0}  # + the approved drafts
    assert second.documents_ingested == first.documents_ingested + 1
    assert second.base_model == "version:1" and second.model_version == "v0002"
    assert second.tokenizer_id == first.tokenizer_id
    assert first.model_promoted and first.promotion.startswith("v0001: promoted: first evaluated version")
    assert "bits per byte for v0001" in second.promotion and set(second.evaluation) == {"v0002"}
    assert second.drafts_model_version == ("v0002" if second.model_promoted else "v0001")
    with db.session() as s:
        assert s.get(ModelVersion, 2).parent_id == 1
        assert s.scalar(sa.select(sa.func.count()).select_from(Draft)) == 2 * expected


def test_a_night_on_the_users_corpus_prompts_with_its_held_out_openings(
    prefect_harness: None, settings: Settings, corpus_dir: Path
) -> None:
    """No prompts file: the drafts continue the openings of documents the model did not train on,
    one category per source, and the summary says where the prompts came from."""
    from storage.models import Prompt
    from storage.parquet_store import iter_batches
    from tasks.tokenize.packing import is_validation

    params = nightly_params(f"notes={corpus_dir}", "", str(settings.home)).model_copy(update={"prompts_file": None})
    summary = nightly(params)
    assert summary.prompts.startswith("the openings of ") and "held-out" in summary.prompts
    held_out = {
        " ".join(text.split())
        for batch in iter_batches(settings.clean_dir, columns=["doc_id", "text"])
        for doc_id, text in zip(batch.column("doc_id").to_pylist(), batch.column("text").to_pylist(), strict=True)
        if is_validation(doc_id, TOKENIZE.val_fraction)
    }
    with open_database(settings.database_url).session() as s:
        prompts = s.scalars(sa.select(Prompt).join(Draft, Draft.prompt_id == Prompt.id).distinct()).all()
        categories = set(s.scalars(sa.select(Draft.category).distinct()))
    assert prompts and categories == {"notes"}
    assert all(any(p.text in text for text in held_out) for p in prompts)
    assert summary.drafts_generated == len(prompts) * GENERATE.samples_per_prompt


def test_a_failing_stage_marks_the_run_failed_and_keeps_earlier_outputs(
    prefect_harness: None, settings: Settings, tmp_path: Path, prompts_file: Path
) -> None:
    corpus = tmp_path / "tiny"
    corpus.mkdir()
    (corpus / "a.txt").write_text("This is far too short to keep.")
    params = nightly_params(str(corpus), str(prompts_file), str(settings.home))
    params = params.model_copy(update={"clean": CleanParams(profile="web")})  # web pages need 50 words
    with pytest.raises(DraftflowError, match="no documents left after cleaning"):
        nightly(params)
    with open_database(settings.database_url).session() as s:
        (run,) = s.scalars(sa.select(Run)).all()
        assert run.status == "failed" and "no documents left after cleaning" in run.error
    assert count_rows(settings.raw_dir) == 1  # ingest's output is intact


def test_make_run_path_draftflow_run_on_the_embedded_corpus(tmp_path: Path) -> None:
    """What `make run` does, with a 2-step training budget: real CLI, real ephemeral Prefect server."""
    env = {**os.environ, "DRAFTFLOW_HOME": str(tmp_path / "home"), "PREFECT_HOME": str(tmp_path / "prefect")}
    env.pop("DRAFTFLOW_DATABASE_URL", None)
    exe = Path(sys.executable).with_name("draftflow")
    proc = subprocess.run(
        [str(exe), "run", "--max-train-steps", "2", "--samples-per-prompt", "1", "--max-new-tokens", "8"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Documents ingested" in proc.stdout and "draftflow review list --status pending" in proc.stdout
    db = open_database(Settings.from_env(tmp_path / "home").database_url)
    with db.session() as s:
        queued = s.scalar(sa.select(sa.func.count()).select_from(Draft).where(Draft.status.in_(["pending", "flagged"])))
        (run,) = s.scalars(sa.select(Run)).all()
    # the shipped default prompts, one sample each; a 2-step model's 8-token drafts may be held as too short
    assert queued == 16 == run.summary["drafts_queued"]
    assert run.status == "completed" and run.summary["documents_ingested"] > 3000
    assert run.summary["documents_ingested"] == run.summary["documents_kept"] + run.summary["documents_rejected"]


def test_draftflow_run_reports_a_user_error_in_a_stage_without_a_traceback(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("This is far too short to keep.")
    env = {**os.environ, "DRAFTFLOW_HOME": str(tmp_path / "home"), "PREFECT_HOME": str(tmp_path / "prefect")}
    exe = Path(sys.executable).with_name("draftflow")
    proc = subprocess.run(
        [str(exe), "run", "--corpus", str(corpus), "--profile", "web"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    assert "error: no documents left after cleaning: all 1 were rejected (1 gopher_too_few_words)" in proc.stderr


def test_finetune_runs_as_its_own_flow(
    prefect_harness: None, settings: Settings, corpus_dir: Path, prompts_file: Path
) -> None:
    from flows.finetune_flow import FinetuneParams, finetune_flow
    from storage.refs import BaseModelSpec
    from tasks.clean.stage import clean_corpus
    from tasks.ingest.stage import ingest_corpus
    from tasks.tokenize.bpe import prepare_tokenizer
    from tasks.tokenize.stage import tokenize_corpus
    from tests.tiny import TOKENIZE, TRAIN

    cleaned = clean_corpus(ingest_corpus([str(corpus_dir)], settings), settings)
    tokenize_corpus(
        cleaned, prepare_tokenizer(cleaned, BaseModelSpec(kind="scratch"), settings, TOKENIZE), settings, TOKENIZE
    )
    model = finetune_flow(FinetuneParams(base_model="scratch", home=str(settings.home), training=TRAIN))
    assert model.name == "v0001" and model.steps == TRAIN.max_steps
    with open_database(settings.database_url).session() as s:
        (run,) = s.scalars(sa.select(Run)).all()
        assert run.kind == "finetune" and run.status == "completed"


def test_setup_creates_the_gpu_concurrency_limit(prefect_harness: None, settings: Settings) -> None:
    from prefect.client.orchestration import get_client

    from flows.setup import setup_all

    assert setup_all(settings, gpu_slots=1)["gpu_limit"]["concurrency_limit"] == 1
    assert setup_all(settings, gpu_slots=2)["gpu_limit"]["concurrency_limit"] == 2  # idempotent: an upsert
    with get_client(sync_client=True) as client:
        assert client.read_concurrency_limit_by_tag("gpu").concurrency_limit == 2
