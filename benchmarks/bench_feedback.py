"""The loop learns from its editors: a simulated editor, nights with feedback and nights without.

A deterministic simulated editor reviews every draft of every night by a house-style rule that the
model never sees: a draft is approved when what the model wrote is a finished text (it ends a
sentence with ".", "!" or "?") of at most MAX_WORDS words, else rejected as off-style. After a shared
first night (scratch model, default corpus, CPU defaults; 200 training steps, about the
3 minutes of the default budget), the same data home is copied twice and
each copy runs N more nights with `draftflow run`, as a user would:
- feedback on:  the approved drafts go back into the corpus (learn_from_editors) and the night's
                model is preference-tuned with DPO on the editor's (prompt, chosen, rejected) pairs;
- feedback off: learn_from_editors and preference tuning off; everything else the same.
It prints the simulated editor's approval rate per night for both, and writes the curve as a PNG.
Target (a benchmark, not a timed test): with feedback on, approval rises by at least 20 points from
the shared first night to the last, and ends above the run without feedback.

Run: .venv/bin/python -m benchmarks.bench_feedback [--nights 5] [--steps 70] [--samples 8] [--png PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import Targets
from storage.db import open_database
from storage.models import Draft
from storage.settings import Settings

MAX_WORDS = 30
ENDS_A_SENTENCE = re.compile(r"[.!?][\"')\]]*$")
EDITOR = "simulated-editor"


def approves(prompt: str, text: str) -> bool:
    """The house style: what the model wrote is finished and short."""
    written = text[len(prompt) :] if text.startswith(prompt) else text
    words = written.split()
    return 0 < len(words) <= MAX_WORDS and bool(ENDS_A_SENTENCE.search(written.strip()))


def review_night(home: Path, run_id: str) -> tuple[int, int]:
    """The simulated editor decides every draft of the night, through the desk's own actions."""
    from sqlalchemy import select

    from storage.models import Prompt
    from storage.queue import claim_by_id
    from tasks.review import actions

    db = open_database(Settings.from_env(home).database_url)
    with db.session() as s:
        rows = s.execute(
            select(Draft.id, Prompt.text, Draft.current_text)
            .join(Prompt, Prompt.id == Draft.prompt_id)
            .where(Draft.run_id == run_id)
            .order_by(Draft.id)
        ).all()
    approved = 0
    for draft_id, prompt, text in rows:
        claim_by_id(db, draft_id, EDITOR)  # from the pending or the flagged queue
        if approves(prompt, text):
            actions.approve(db, draft_id, EDITOR)
            approved += 1
        else:
            actions.reject(db, draft_id, EDITOR, "style", note="not the house style")
    return approved, len(rows)


def run_night(home: Path, prefect_home: Path, config: dict[str, Any], label: str) -> dict[str, Any]:
    config_file = home.parent / f"{home.name}-night.json"
    config_file.write_text(json.dumps(config))
    env = os.environ | {
        "DRAFTFLOW_HOME": str(home),
        "PREFECT_HOME": str(prefect_home),
        "DRAFTFLOW_LOG_LEVEL": "WARNING",
    }
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", "run", "--config", str(config_file), "--json"],
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"{label}: draftflow run failed:\n{done.stderr[-3000:]}")
    summary: dict[str, Any] = json.loads(done.stdout[done.stdout.index("{") :])
    summary["wall_seconds"] = round(time.perf_counter() - started, 1)
    return summary


def night_config(args: argparse.Namespace, feedback: bool, first: bool) -> dict[str, Any]:
    return {
        "learn_from_editors": feedback,
        "preference": {"enabled": feedback, **({"learning_rate": args.dpo_lr} if args.dpo_lr else {})},
        # a budget in steps, not minutes: the two arms train the same amount whatever else runs on the box
        "training": {"max_steps": args.first_steps if first else args.steps, "max_minutes": 60},
        "generation": {"samples_per_prompt": args.samples},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nights", type=int, default=5, help="Nights per arm after the shared first night.")
    parser.add_argument("--first-steps", type=int, default=200, help="Training steps of the first night.")
    parser.add_argument("--steps", type=int, default=70, help="Training steps of each later night.")
    parser.add_argument("--samples", type=int, default=8, help="Drafts per prompt each night.")
    parser.add_argument("--dpo-lr", type=float, default=None, help="DPO learning rate (default: the shipped one).")
    parser.add_argument("--png", type=Path, default=Path("benchmarks/feedback_curve.png"), help="Where the curve goes.")
    parser.add_argument("--keep", action="store_true", help="Keep the data homes (printed) for `draftflow models`.")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="draftflow-bench-feedback-"))
    start = root / "start"
    print(f"shared first night in {start} ...", flush=True)
    first = run_night(start, root / "prefect-start", night_config(args, True, first=True), "first night")
    approved, total = review_night(start, first["run_id"])
    start_rate = approved / total
    print(f"  night 0 (shared): {approved}/{total} approved = {start_rate:.0%} ({first['wall_seconds']} s)", flush=True)

    curves: dict[str, list[float]] = {}
    details: dict[str, list[dict[str, Any]]] = {}
    for arm, feedback in (("feedback on", True), ("feedback off", False)):
        home = root / arm.replace(" ", "-")
        shutil.copytree(start, home)
        curves[arm], details[arm] = [start_rate], []
        for night in range(1, args.nights + 1):
            summary = run_night(home, root / f"prefect-{home.name}", night_config(args, feedback, first=False), arm)
            approved, total = review_night(home, summary["run_id"])
            curves[arm].append(approved / total)
            pref = summary.get("preference") or {}
            details[arm].append(
                {
                    "night": night,
                    "approved": approved,
                    "drafts": total,
                    "version": summary["model_version"],
                    "drafts_by": summary.get("drafts_model_version"),
                    "dpo": pref.get("version") or pref.get("skipped", "")[:60],
                    "pairs": pref.get("pairs"),
                    "seconds": summary["wall_seconds"],
                }
            )
            print(
                f"  {arm}, night {night}: {approved}/{total} approved = {approved / total:.0%} "
                f"(drafts by {summary.get('drafts_model_version')}, DPO: {details[arm][-1]['dpo']}, "
                f"{summary['wall_seconds']} s)",
                flush=True,
            )

    print("\napproval rate of the simulated editor per night")
    print(f"{'night':>5}  {'feedback on':>11}  {'feedback off':>12}")
    for night in range(args.nights + 1):
        on, off = curves["feedback on"][night], curves["feedback off"][night]
        print(f"{night:>5}  {on:>11.1%}  {off:>12.1%}")
    rise = (curves["feedback on"][-1] - start_rate) * 100
    lead = (curves["feedback on"][-1] - curves["feedback off"][-1]) * 100
    write_png(curves, args.png)
    print(f"curve: {args.png}")
    targets = Targets()
    targets.check("approval rise with feedback over the nights", rise, ">=", 20, " points")
    targets.check("feedback on minus off on the last night", lead, ">=", 0.1, " points")
    if args.keep:
        print(f"data homes kept under {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    targets.finish()


def write_png(curves: dict[str, list[float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 3.6), dpi=120)
    for arm, style in (("feedback on", "o-"), ("feedback off", "s--")):
        axes.plot(range(len(curves[arm])), [v * 100 for v in curves[arm]], style, label=arm)
    axes.set_xlabel("night (0: the shared first night)")
    axes.set_ylabel("approved by the simulated editor (%)")
    axes.set_ylim(0, 100)
    axes.grid(alpha=0.3)
    axes.legend()
    axes.set_title("draftflow: approval rate with and without editors' feedback")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)


if __name__ == "__main__":
    main()
