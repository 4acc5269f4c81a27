"""Generate: prompt files, batched left-padded sampling, recorded parameters, no duplicates on re-run."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from storage.db import Database
from storage.errors import DraftflowError
from storage.models import Draft, ReviewEvent
from storage.parquet_store import iter_batches
from storage.refs import ModelRef
from storage.runs import start_run
from storage.settings import Settings
from tasks.generate.params import GenerationParams
from tasks.generate.prompts import default_prompts_path, load_prompts
from tasks.generate.stage import generate_drafts
from tasks.models import pick_device
from tasks.review.params import CheckParams
from tasks.review.stage import queue_run

UNCHECKED = CheckParams(min_new_words=0, max_echo_share=1.0)  # drafts of a 1-layer model: route, don't judge


def drafts(db: Database, run_id: str) -> list[Draft]:
    with db.session() as s:
        return list(s.scalars(sa.select(Draft).where(Draft.run_id == run_id).order_by(Draft.id)))


def test_prompt_files_plain_lines_and_jsonl(tmp_path: Path, prompts_file: Path) -> None:
    lines = tmp_path / "seeds.txt"
    lines.write_text("# a comment\nFirst seed text\n\n  Second seed text  \n")
    plain = load_prompts(lines)
    assert [p.text for p in plain] == ["First seed text", "Second seed text"]
    assert all(p.category is None and p.source == "seeds" for p in plain)
    rich = load_prompts(prompts_file)
    assert next((p.text, p.category) for p in rich) == ("The module returns", "technical doc")
    assert rich[0].key.startswith("prompts:a:")
    defaults = load_prompts(None)
    assert len(defaults) >= 10 and default_prompts_path().is_file()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"id": 1, "text": "ok"}\n{"id": 2, "text": \n', "line 2: not valid JSON"),
        ('{"id": 1, "body": "no text"}\n', "line 1: needs a non-empty string field 'text'"),
        ("\n\n", "has no prompts"),
    ],
)
def test_bad_prompt_files_are_user_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(content)
    with pytest.raises(DraftflowError, match=message):
        load_prompts(path)


def test_missing_prompt_file(tmp_path: Path) -> None:
    with pytest.raises(DraftflowError, match="does not exist"):
        load_prompts(tmp_path / "nope.jsonl")


def test_generates_every_draft_once_with_its_parameters(db: Database, tiny_model: ModelRef, prompts_file: Path) -> None:
    prompts = load_prompts(prompts_file)
    start_run(db, "run-1", "test", {})
    params = GenerationParams(samples_per_prompt=2, max_new_tokens=8, temperature=0.9, top_p=0.9, batch_size=4)
    result = generate_drafts(tiny_model, prompts, params, db, "run-1")
    assert result.drafts_new == 6 and result.drafts_skipped == 0
    rows = drafts(db, "run-1")
    prompt_ids = {d.prompt_id for d in rows}
    assert len(prompt_ids) == 3
    assert {(d.prompt_id, d.sample_index) for d in rows} == {(p, s) for p in prompt_ids for s in (0, 1)}
    for d in rows:
        assert d.status == "generated" and d.model_version_id == tiny_model.version_id
        assert d.params == {
            "temperature": 0.9,
            "top_p": 0.9,
            "top_k": 0,
            "repetition_penalty": 1.0,
            "max_new_tokens": 8,
            "min_new_tokens": 0,
            "stop": [],
            "template": "{text}",
            "batch": {"id": d.params["batch"]["id"], "position": d.params["batch"]["position"]},
        }
        assert isinstance(d.seed, int) and d.original_text == d.current_text
        assert 0 < d.scores["new_tokens"] <= 8 or d.scores["stopped_at_eos"]

    again = generate_drafts(tiny_model, prompts, params, db, "run-1")
    assert again.drafts_new == 0 and again.drafts_skipped == 6
    assert len(drafts(db, "run-1")) == 6


def test_an_interrupted_run_resumes_with_only_the_missing_drafts(
    db: Database, tiny_model: ModelRef, prompts_file: Path
) -> None:
    prompts = load_prompts(prompts_file)
    start_run(db, "run-2", "test", {})
    params = GenerationParams(samples_per_prompt=2, max_new_tokens=4, batch_size=2)

    def crash_after_first_batch(done: int, total: int, message: str) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate_drafts(tiny_model, prompts, params, db, "run-2", progress=crash_after_first_batch)
    assert len(drafts(db, "run-2")) == 2  # the first batch was written before the crash
    resumed = generate_drafts(tiny_model, prompts, params, db, "run-2")
    assert resumed.drafts_new == 4 and resumed.drafts_skipped == 2
    keys = [(d.prompt_id, d.sample_index) for d in drafts(db, "run-2")]
    assert len(keys) == len(set(keys)) == 6


def test_left_padded_batch_equals_each_prompt_alone_under_greedy(
    db: Database, tiny_model: ModelRef, prompts_file: Path
) -> None:
    prompts = load_prompts(prompts_file)  # prompts of different lengths -> padding in the batch
    greedy = GenerationParams(samples_per_prompt=1, max_new_tokens=10, temperature=0, batch_size=8)
    start_run(db, "batched", "test", {})
    generate_drafts(tiny_model, prompts, greedy, db, "batched")
    batched = {d.prompt_id: d.original_text for d in drafts(db, "batched")}
    for i, prompt in enumerate(prompts):
        run = f"alone-{i}"
        start_run(db, run, "test", {})
        generate_drafts(tiny_model, [prompt], greedy.model_copy(update={"batch_size": 1}), db, run)
        (alone,) = drafts(db, run)
        assert alone.original_text == batched[alone.prompt_id]


def test_queue_moves_generated_drafts_to_pending_with_an_event(
    db: Database, tiny_model: ModelRef, prompts_file: Path
) -> None:
    start_run(db, "run-q", "test", {})
    generate_drafts(tiny_model, load_prompts(prompts_file), GenerationParams(max_new_tokens=4), db, "run-q")
    result = queue_run(db, "run-q", params=UNCHECKED)  # the routing is the point here, not the checks
    assert result.queued == 6 and result.queue == {"pending": 6}
    assert {d.status for d in drafts(db, "run-q")} == {"pending"}
    assert all("n_words" in d.scores and "new_tokens" in d.scores for d in drafts(db, "run-q"))
    with db.session() as s:
        events = s.scalars(sa.select(ReviewEvent)).all()
    assert len(events) == 6
    assert {(e.action, e.from_status, e.to_status, e.actor) for e in events} == {
        ("queue", "generated", "pending", "draftflow")
    }
    assert queue_run(db, "run-q").queued == 0  # idempotent
    json.dumps(result.model_dump())


def test_per_prompt_overrides_and_stop_strings(db: Database, tiny_model: ModelRef, tmp_path: Path) -> None:
    greedy = GenerationParams(samples_per_prompt=1, max_new_tokens=12, temperature=0, batch_size=4)
    plain = tmp_path / "plain.jsonl"
    plain.write_text(json.dumps({"id": "x", "text": "The module returns"}) + "\n")
    start_run(db, "free", "test", {})
    generate_drafts(tiny_model, load_prompts(plain), greedy, db, "free")
    (free,) = drafts(db, "free")
    continuation = free.original_text[len("The module returns") :]
    stop = continuation.strip()[len(continuation.strip()) // 2 :][:3]  # text the model is known to write
    assert stop.strip()

    overrides = tmp_path / "overrides.jsonl"
    overrides.write_text(
        json.dumps({"id": "x", "text": "The module returns", "stop": stop})
        + "\n"
        + json.dumps({"id": "y", "text": "A thread queue is", "max_new_tokens": 2})
        + "\n"
    )
    start_run(db, "over", "test", {})
    generate_drafts(tiny_model, load_prompts(overrides), greedy, db, "over")
    by_prompt = {d.params["max_new_tokens"]: d for d in drafts(db, "over")}
    short, stopped = by_prompt[2], by_prompt[12]
    assert short.scores["new_tokens"] <= 2 and short.params["stop"] == []
    assert stopped.params["stop"] == [stop] and stopped.scores["stopped"] == "stop_string"
    assert stop not in stopped.original_text[len("The module returns") :]
    assert free.original_text.startswith(stopped.original_text)  # the same text, cut at the stop string


def test_a_draft_regenerates_from_its_recorded_seed_alone(
    db: Database, tiny_model: ModelRef, prompts_file: Path
) -> None:
    prompts = load_prompts(prompts_file)
    sampled = GenerationParams(samples_per_prompt=2, max_new_tokens=10, temperature=1.0, top_p=0.9, batch_size=8)
    start_run(db, "batch", "test", {})
    generate_drafts(tiny_model, prompts, sampled, db, "batch")
    batched = {(d.prompt_id, d.sample_index): d for d in drafts(db, "batch")}
    assert len({d.seed for d in batched.values()}) == 6  # one seed per draft
    # each prompt alone, in its own run and batch: the same seeds give the same drafts
    for prompt in prompts:
        run = f"alone-{prompt.key}"
        start_run(db, run, "test", {})
        generate_drafts(tiny_model, [prompt], sampled.model_copy(update={"batch_size": 1}), db, run)
        for d in drafts(db, run):
            twin = batched[(d.prompt_id, d.sample_index)]
            assert (d.seed, d.original_text) == (twin.seed, twin.original_text)


def test_a_stored_draft_regenerates_from_its_record(db: Database, tiny_model: ModelRef, prompts_file: Path) -> None:
    from tasks.generate.stage import regenerate_draft

    params = GenerationParams(
        samples_per_prompt=2,
        max_new_tokens=12,
        min_new_tokens=6,
        temperature=1.1,
        top_k=50,
        repetition_penalty=1.3,
        template="Topic {category}: {text}",
    )
    start_run(db, "rec", "test", {})
    generate_drafts(tiny_model, load_prompts(prompts_file), params, db, "rec")
    stored = drafts(db, "rec")
    assert all(d.scores["new_tokens"] >= 6 for d in stored)  # min_new_tokens held EOS back
    assert len({d.params["batch"]["id"] for d in stored}) == 1  # six drafts, one batch of the default size
    for d in stored:
        assert regenerate_draft(db, d.id) == d.original_text  # replays the draft's batch: exact on a GPU too
        if pick_device().type == "cpu":  # on a CPU a draft does not depend on its batch at all
            assert regenerate_draft(db, d.id, alone=True) == d.original_text


def test_prompts_from_csv_parquet_and_the_prompts_table(db: Database, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tasks.generate.prompts import prompts_from_table

    csv_file = tmp_path / "seeds.csv"
    csv_file.write_text("id,text,category,temperature\n1,First seed,news,0.5\n2,Second seed,,\n")
    rows = load_prompts(csv_file)
    assert [(r.text, r.category, r.params) for r in rows] == [
        ("First seed", "news", {"temperature": 0.5}),
        ("Second seed", None, {}),
    ]
    parquet_file = tmp_path / "seeds.parquet"
    pq.write_table(pa.table({"text": ["From parquet"], "category": ["product description"]}), parquet_file)
    assert load_prompts(parquet_file)[0].category == "product description"
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": "x", "temperature": -1}) + "\n")
    with pytest.raises(DraftflowError, match="line 1: temperature"):
        load_prompts(bad)
    from storage.drafts import upsert_prompts

    upsert_prompts(db, rows)
    assert [p.text for p in prompts_from_table(db, "news")] == ["First seed"]
    with pytest.raises(DraftflowError, match="prompts table is empty for category 'none'"):
        prompts_from_table(db, "none")


def test_prompt_and_new_tokens_are_fitted_to_the_context_and_say_so() -> None:
    from tasks.generate.stage import MIN_NEW_TOKENS, fit_to_context

    assert fit_to_context(list(range(10)), 20, 64) == (list(range(10)), 20, "")
    assert fit_to_context(list(range(40)), 30, 64) == (list(range(40)), 24, "clamped")  # the room left
    ids, new, what = fit_to_context(list(range(60)), 30, 64)
    assert (new, what) == (MIN_NEW_TOKENS, "truncated") and ids == list(range(12, 60)) and len(ids) + new == 64
    assert fit_to_context(list(range(60)), 30, None) == (list(range(60)), 30, "")  # context unknown


def test_max_new_tokens_with_no_room_for_a_prompt_is_a_one_line_error(
    db: Database, tiny_model: ModelRef, prompts_file: Path
) -> None:
    from storage.errors import DraftflowError

    start_run(db, "run-room", "test", {})
    with pytest.raises(DraftflowError, match=r"--max-new-tokens 64 leaves no room for the prompt: v0001 reads"):
        generate_drafts(tiny_model, load_prompts(prompts_file), GenerationParams(max_new_tokens=64), db, "run-room")
    result = generate_drafts(
        tiny_model,
        load_prompts(prompts_file),
        GenerationParams(max_new_tokens=28, samples_per_prompt=1),
        db,
        "run-room",
    )
    # 28 new tokens and any of the prompts are more than the tiny model's 32 positions: each draft is fitted
    assert result.clamped + result.truncated == 3 and result.clamped >= 1 and result.truncated >= 1
    made = drafts(db, "run-room")
    assert {d.scores["fitted_to_context"] for d in made} == {"clamped", "truncated"}
    assert all(d.scores["prompt_tokens"] + d.params["max_new_tokens"] <= 32 for d in made)


def test_prompts_from_the_corpus_are_openings_of_held_out_documents_of_each_source(
    settings: Settings, tmp_path: Path
) -> None:
    from tasks.clean.params import CleanParams
    from tasks.clean.stage import clean_corpus
    from tasks.generate.prompts import opening_of, prompts_from_corpus
    from tasks.ingest.stage import ingest_corpus
    from tasks.tokenize.packing import is_validation
    from tests.conftest import write_corpus

    sources = [f"alpha={write_corpus(tmp_path / 'a', seed=1)}", f"beta={write_corpus(tmp_path / 'b', seed=2)}"]
    clean_corpus(ingest_corpus(sources, settings), settings, CleanParams(profile="web", dedup_near=False))
    prompts, where = prompts_from_corpus(settings.clean_dir, count=6, val_fraction=0.3)
    assert len(prompts) == 6 and {p.category for p in prompts} == {"alpha", "beta"}
    assert [p.category for p in prompts[:2]] == ["alpha", "beta"]  # taken in turn from each source
    assert where.startswith("the openings of 6 held-out documents of the corpus (alpha 3, beta 3)")
    from storage.parquet_store import iter_batches

    docs = {r["text"]: r["doc_id"] for b in iter_batches(settings.clean_dir) for r in b.to_pylist()}
    held_out = {opening_of(text): doc_id for text, doc_id in docs.items() if is_validation(doc_id, 0.3)}
    assert all(p.text in held_out for p in prompts)
    assert prompts_from_corpus(settings.clean_dir, count=6, val_fraction=0.3)[0] == prompts  # deterministic


def test_a_corpus_of_few_large_documents_prompts_with_their_paragraphs(settings: Settings, tmp_path: Path) -> None:
    """Reference pages or books hold out one or two documents: their later paragraphs prompt too, after
    every document's own opening, and the summary line says so."""
    from tasks.clean.params import CleanParams
    from tasks.clean.stage import clean_corpus
    from tasks.generate.prompts import prompts_from_corpus
    from tasks.ingest.stage import ingest_corpus
    from tests.conftest import paragraph

    rng = random.Random(5)
    folder = tmp_path / "book"
    folder.mkdir()
    for i in range(2):
        (folder / f"part{i}.txt").write_text("\n\n".join(paragraph(rng, 4) for _ in range(12)))
    clean_corpus(ingest_corpus([str(folder)], settings), settings, CleanParams(profile="long-form", dedup_near=False))
    prompts, where = prompts_from_corpus(settings.clean_dir, count=6, val_fraction=0.5)
    assert len(prompts) == 6 and len({p.text for p in prompts}) == 6
    assert re.match(r"the openings of 6 paragraphs of [12] (held-out )?documents? ", where), where
    docs = {r["text"] for b in iter_batches(settings.clean_dir) for r in b.to_pylist()}
    assert all(any(p.text in " ".join(d.split()) for d in docs) for p in prompts)  # each from a paragraph
