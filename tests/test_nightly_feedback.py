"""The loop learns from its editors, in the nightly flow: DPO after the fine-tune once editors gave
enough pairs, evaluation of both versions, promotion by the evaluation, and the switches."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from flows.nightly import nightly
from storage.db import open_database
from storage.models import Draft, ModelEvaluation, ModelVersion
from storage.settings import Settings
from tasks.review import actions as editor
from tasks.train.preference_params import PreferenceParams
from tests.tiny import nightly_params

pytestmark = pytest.mark.slow


def _decide_all(settings: Settings) -> int:
    """Editors decide every pending draft: the first sample of each prompt approved, the rest rejected."""
    db = open_database(settings.database_url)
    decided = 0
    while (draft := editor.claim(db, "ann")) is not None:
        if draft.sample_index == 0:
            editor.approve(db, draft.id, "ann")
        else:
            editor.reject(db, draft.id, "ann", "style")
        decided += 1
    return decided


def test_a_night_preference_tunes_on_the_editors_pairs_and_promotion_follows_the_evaluation(
    prefect_harness: None, settings: Settings, corpus_dir: Path, prompts_file: Path
) -> None:
    params = nightly_params(str(corpus_dir), str(prompts_file), str(settings.home))
    params = params.model_copy(
        update={
            "preference": PreferenceParams(min_new_pairs=3, max_steps=4, batch_size=2, max_length=48),
            "generation": params.generation.model_copy(update={"samples_per_prompt": 3}),
        }
    )
    first = nightly(params)
    assert first.preference["skipped"].startswith("preference tuning skipped: 0 new preference pairs")
    assert _decide_all(settings) == 9  # 3 prompts x 3 samples: 3 approved, 6 rejected -> 6 pairs

    second = nightly(params)
    sft, tuned = second.model_version, second.preference["version"]
    assert (sft, tuned) == ("v0002", "v0003") and second.preference["pairs"] == 6
    assert second.preference["metrics"] and "rewards/accuracies" in second.preference["metrics"]
    assert set(second.evaluation) == {"v0002", "v0003"}  # both candidates, on the same fixed set
    db = open_database(settings.database_url)
    with db.session() as s:
        rows = {v.name: v for v in s.scalars(sa.select(ModelVersion))}
        assert rows["v0003"].parent_id == rows["v0002"].id and rows["v0003"].preference["pairs"] == 6
        assert s.scalar(sa.select(sa.func.count()).select_from(ModelEvaluation)) == 3
        drafts_by = {v for (v,) in s.execute(sa.select(Draft.model_version_id).where(Draft.run_id == second.run_id))}
    # the preference-tuned version is tried first; whichever the evaluation promoted wrote the drafts
    promoted = [name for name in ("v0003", "v0002") if rows[name].promoted]
    assert len(promoted) <= 1 and second.drafts_model_version == (promoted[0] if promoted else "v0001")
    assert drafts_by == {rows[second.drafts_model_version].id}
    assert ("v0003: promoted" in second.promotion) == rows["v0003"].promoted

    # no new decisions: the third night does not tune again on the same pairs
    third = nightly(params)
    assert third.preference["skipped"].startswith("preference tuning skipped: 0 new preference pairs")


def test_preference_tuning_and_evaluation_can_be_turned_off(
    prefect_harness: None, settings: Settings, corpus_dir: Path, prompts_file: Path
) -> None:
    params = nightly_params(str(corpus_dir), str(prompts_file), str(settings.home))
    off = params.model_copy(
        update={
            "preference": PreferenceParams(enabled=False),
            "evaluation": params.evaluation.model_copy(update={"enabled": False}),
        }
    )
    summary = nightly(off)
    assert summary.preference == {"skipped": "preference tuning is off (preference.enabled)"}
    assert summary.evaluation == {} and "evaluate" not in summary.seconds
    assert summary.promotion == "first model version"  # the fine-tune's own rule: perplexity
    with open_database(settings.database_url).session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(ModelEvaluation)) == 0
