"""Every version evaluated the same way: bits per byte on a frozen held-out set, evaluation drafts
with fixed seeds and their metrics, promotion by the evaluation, and `draftflow models`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import sqlalchemy as sa
import torch

from storage.db import Database
from storage.evaluations import evaluation_drafts
from storage.models import Draft, EvaluationDraft, ModelEvaluation, ModelVersion
from storage.refs import ModelRef
from storage.registry import get_model_version
from storage.settings import Settings
from tasks.evaluate.bits_per_byte import text_likelihood
from tasks.evaluate.eval_set import eval_set_path, freeze_eval_set, load_eval_set
from tasks.evaluate.params import EvalParams
from tasks.evaluate.promotion import Scored, decide
from tasks.evaluate.stage import evaluate_and_promote, evaluate_version
from tasks.generate.prompts import load_prompts
from tasks.models import load_causal_lm, load_tokenizer
from tests.cli_helpers import run_cli
from tests.tiny import EVALUATE, TRAIN

TEXT = "The module returns a value for each key in the mapping, and raises an error when it is not found."
SHORT = "The module returns a value."  # within the tiny model's 32 positions in one piece


def test_bits_per_byte_scores_every_token_once_and_matches_the_models_own_loss(tiny_model: ModelRef) -> None:
    model, tokenizer = load_causal_lm(tiny_model.path).eval(), load_tokenizer(tiny_model.path)
    ids = [tokenizer.eos_token_id, *tokenizer(SHORT, add_special_tokens=False)["input_ids"]]
    assert len(ids) <= 32
    with torch.inference_mode():
        loss = model(torch.tensor([ids]), labels=torch.tensor([ids])).loss.item()  # mean over len(ids) - 1
    whole = text_likelihood(model, tokenizer, [SHORT], context=32, device=torch.device("cpu"))
    assert whole.tokens == len(ids) - 1 and whole.bytes == len(SHORT.encode())
    assert whole.nats == pytest.approx(loss * (len(ids) - 1), rel=1e-4)
    assert whole.bits_per_byte == pytest.approx(whole.nats / math.log(2) / whole.bytes)
    # in windows of 8 tokens (overlapping by one) every token is still predicted exactly once
    windowed = text_likelihood(model, tokenizer, [TEXT, SHORT], context=8, device=torch.device("cpu"))
    long = len(tokenizer(TEXT, add_special_tokens=False)["input_ids"])
    assert long > 32 and windowed.tokens == long + whole.tokens and windowed.documents == 2
    assert windowed.nats > 0 and math.isfinite(windowed.nats)


def test_a_trained_model_needs_fewer_bits_per_byte_than_an_untrained_one(tiny_model: ModelRef) -> None:
    from transformers import GPT2LMHeadModel

    tokenizer = load_tokenizer(tiny_model.path)
    trained = load_causal_lm(tiny_model.path).eval()
    torch.manual_seed(0)
    untrained = GPT2LMHeadModel(trained.config).eval()
    cpu = torch.device("cpu")
    assert (
        text_likelihood(trained, tokenizer, [TEXT], 32, cpu).bits_per_byte
        < text_likelihood(untrained, tokenizer, [TEXT], 32, cpu).bits_per_byte
    )


def _eval_set(settings: Settings, prompts_file: Path, params: EvalParams = EVALUATE):  # type: ignore[no-untyped-def]
    return freeze_eval_set(settings, settings.clean_dir, load_prompts(prompts_file), params, val_fraction=0.2)


def test_the_evaluation_set_is_frozen_on_first_use(
    tiny_model: ModelRef, settings: Settings, prompts_file: Path
) -> None:
    first = _eval_set(settings, prompts_file)
    assert eval_set_path(settings).is_file() and first.held_out
    assert 0 < len(first.documents) <= EVALUATE.documents and len(first.prompts) == 3
    assert all(len(p.seeds) == EVALUATE.seeds for p in first.prompts)
    # other prompts, other sizes, a grown corpus: the set stays the one made first
    bigger = EvalParams(documents=50, prompts=1, seeds=4)
    again = freeze_eval_set(settings, settings.clean_dir, load_prompts(prompts_file)[:1], bigger, val_fraction=0.2)
    assert again.fingerprint == first.fingerprint and again == load_eval_set(settings)
    stored = json.loads(eval_set_path(settings).read_text())
    assert stored["fingerprint"] == first.fingerprint


def test_a_version_is_evaluated_once_and_its_drafts_are_kept_apart(
    tiny_model: ModelRef, settings: Settings, db: Database, prompts_file: Path
) -> None:
    eval_set = _eval_set(settings, prompts_file)
    info = get_model_version(db, tiny_model.name)
    first = evaluate_version(db, info, eval_set)
    assert first.bits_per_byte is not None and 0 < first.bits_per_byte < 20
    (source,) = eval_set.sources
    assert first.by_source[source]["documents"] == len(eval_set.documents)
    metrics = first.draft_metrics
    assert metrics["drafts"] == 3 * EVALUATE.seeds
    for key in ("repetition", "distinct_1", "distinct_2", "echo_rate", "empty_rate", "eos_rate", "mean_words"):
        assert key in metrics, key
    drafts = evaluation_drafts(db, info.id)
    assert len({(d.prompt_key, d.seed) for d in drafts}) == len(drafts) == 6
    with db.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Draft)) == 0  # never queued
    # read back, not measured again; --again measures again, with the same seeds: the same drafts
    assert evaluate_version(db, info, eval_set) == first
    again = evaluate_version(db, info, eval_set, again=True)
    assert [d.text for d in evaluation_drafts(db, info.id)] == [d.text for d in drafts]
    assert again.bits_per_byte == pytest.approx(first.bits_per_byte)
    with db.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(ModelEvaluation)) == 1
        assert s.scalar(sa.select(sa.func.count()).select_from(EvaluationDraft)) == 6


def test_promotion_follows_bits_per_byte_and_the_draft_guards() -> None:
    params = EvalParams()
    old = Scored("v0001", 2.0, {"repetition": 0.10, "echo_rate": 0.0, "empty_rate": 0.0})
    ok, why = decide(Scored("v0002", 1.9, {"repetition": 0.12, "echo_rate": 0.05, "empty_rate": 0.0}), old, params)
    assert ok and "1.9000 vs 2.0000 bits per byte for v0001" in why
    ok, why = decide(Scored("v0002", 2.1, dict(old.metrics)), old, params)
    assert not ok and "fits the held-out text worse" in why and "tolerance 2%" in why
    loop = Scored("v0002", 1.5, {"repetition": 0.40, "echo_rate": 0.30, "empty_rate": 0.0})
    ok, why = decide(loop, old, params)
    assert not ok and "repeats itself more (repetition 0.400 vs 0.100" in why and "echoes its prompts more" in why
    assert decide(loop, None, params)[0]  # the first version has nothing to be worse than
    # a preference-tuned version may trade up to preference_bpb_tolerance (5%) of likelihood, no more
    tuned = Scored("v0003", 2.08, dict(old.metrics), preference_tuned=True)
    assert decide(tuned, old, params)[0] and not decide(Scored("v0003", 2.08, dict(old.metrics)), old, params)[0]
    ok, why = decide(Scored("v0003", 2.2, dict(old.metrics), preference_tuned=True), old, params)
    assert not ok and "tolerance 5%" in why


def _second_version(tiny_model: ModelRef, settings: Settings, db: Database) -> ModelRef:
    """v0002: trained on from v0001 (a few more steps), registered unpromoted as the nightly flow does."""
    from tasks.models import resolve_base_model
    from tasks.tokenize.stage import latest_tokens
    from tasks.train.stage import train_model

    base = resolve_base_model(tiny_model.name, db)
    return train_model(latest_tokens(settings), base, TRAIN, db, settings, defer_promotion=True)


def test_evaluation_decides_promotion_and_a_vetoed_candidate_stays_unpromoted(
    tiny_model: ModelRef, settings: Settings, db: Database, prompts_file: Path
) -> None:
    eval_set = _eval_set(settings, prompts_file)
    candidate = _second_version(tiny_model, settings, db)
    with db.session() as s:
        assert s.get(ModelVersion, candidate.version_id).promoted is False  # type: ignore[union-attr]
    strict = EvalParams(bpb_tolerance=0.0, max_repetition_rise=0, max_echo_rise=0, max_empty_rise=0)
    result = evaluate_and_promote(db, [candidate], eval_set, strict)
    versions = {e.version for e in result.evaluations}
    assert versions == {candidate.name}  # the latest (v0001) was evaluated too, and stored
    with db.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(ModelEvaluation)) == 2
        promoted = s.get(ModelVersion, candidate.version_id).promoted  # type: ignore[union-attr]
    assert promoted == (result.promoted is not None)
    assert result.note.startswith(f"{candidate.name}: ")
    assert ("promoted:" in result.note) == promoted and ("kept but not promoted" in result.note) == (not promoted)


def test_models_list_show_and_compare(
    tiny_model: ModelRef,
    settings: Settings,
    db: Database,
    prompts_file: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    eval_set = _eval_set(settings, prompts_file)
    candidate = _second_version(tiny_model, settings, db)
    evaluate_and_promote(db, [candidate], eval_set, EvalParams(bpb_tolerance=10))
    listed = run_cli(capsys, "models", "list", "--json")
    assert listed.code == 0, listed.err
    rows = {r["version"]: r for r in json.loads(listed.out)}
    assert set(rows) == {"v0001", "v0002"} and rows["v0002"]["promoted"] is True
    assert all(r["bits_per_byte"] > 0 for r in rows.values())
    table = run_cli(capsys, "models", "list")
    assert table.code == 0 and "v0002" in table.out and f"{rows['v0002']['bits_per_byte']:.4f}" in table.out

    shown = run_cli(capsys, "models", "show", "v0002")
    assert shown.code == 0 and "parent v0001" in shown.out and f"{rows['v0002']['bits_per_byte']:.4f}" in shown.out
    compared = run_cli(capsys, "models", "compare", "v0001", "v0002", "--json")
    assert compared.code == 0, compared.err
    c = json.loads(compared.out)
    assert c["same_eval_set"] and {f["metric"] for f in c["figures"]} >= {
        "bits_per_byte",
        "repetition",
        "approval_rate",
    }
    bpb = next(f for f in c["figures"] if f["metric"] == "bits_per_byte")
    assert bpb["delta"] == pytest.approx(bpb["b"] - bpb["a"])
    assert len(c["drafts"]) == 6 and all(d["a"] and d["b"] for d in c["drafts"])
    text = run_cli(capsys, "models", "compare", "v0001", "v0002")
    first = c["drafts"][0]
    assert "B - A" in text.out and f"seed {first['seed']}" in text.out

    missing = run_cli(capsys, "models", "show", "v0099")
    assert missing.code != 0 and "v0099" in missing.err and "Traceback" not in missing.err


def test_models_evaluate_before_any_evaluation_set_is_one_line(
    tiny_model: ModelRef, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_cli(capsys, "models", "evaluate", tiny_model.name)
    assert result.code != 0 and "no evaluation set" in result.err and len(result.err.strip().splitlines()) == 1


def test_the_desk_metrics_page_shows_each_versions_evaluation_beside_its_editors_verdict(db: Database) -> None:
    from fastapi.testclient import TestClient

    from review.app import create_app
    from storage.evaluations import save_evaluation
    from tests.desk_seed import EDITOR, seed_desk
    from tests.test_desk_http import SECRET, sign_in

    seed_desk(db)
    save_evaluation(db, 2, "set1", 1.2345, {"docs": {"bits_per_byte": 1.2345}}, {"repetition": 0.125}, 1.0, [])
    with TestClient(create_app(db.url, secret_key=SECRET)) as client:
        sign_in(client, EDITOR)
        page = client.get("/metrics")
    assert page.status_code == 200
    section = page.text.split("<h2>By model version</h2>")[1]
    assert "Bits per byte" in section and "1.2345" in section and "0.125" in section
    assert "v0001" in section and "v0002" in section
