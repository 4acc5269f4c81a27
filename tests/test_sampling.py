"""The sampler's draws against the exact distributions they are meant to follow."""

from __future__ import annotations

import torch

from tasks.generate.params import SampleSettings
from tasks.generate.sampling import _draw_nucleus, _top_k

PROBS = torch.tensor([0.30, 0.25, 0.15, 0.10, 0.08, 0.05, 0.04, 0.03])


def nucleus_reference(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Top-p by sorting, as HF's TopPLogitsWarper: keep tokens until the mass crosses top_p."""
    ordered, order = torch.sort(probs, descending=True)
    keep = ordered.cumsum(0) - ordered <= top_p
    out = torch.zeros_like(probs)
    out[order[keep]] = ordered[keep]
    return out / out.sum()


def test_nucleus_rejection_sampling_follows_the_exact_top_p_distribution() -> None:
    rows, rounds = 256, 40
    shuffled = PROBS[torch.randperm(len(PROBS), generator=torch.Generator().manual_seed(0))]
    generators = [torch.Generator().manual_seed(i) for i in range(rows)]
    counts = torch.zeros(len(PROBS))
    for _ in range(rounds):
        picks = _draw_nucleus(shuffled.repeat(rows, 1), 0.8, generators)
        counts += torch.bincount(picks, minlength=len(PROBS)).float()
    expected = nucleus_reference(shuffled, 0.8)
    assert torch.all(counts[expected == 0] == 0), "a token outside the nucleus was drawn"
    observed = counts / counts.sum()
    # 10,240 draws: the standard error of a share of ~0.3 is ~0.005.
    assert torch.allclose(observed, expected, atol=0.02), (observed, expected)


def test_nucleus_draws_depend_only_on_each_rows_generator() -> None:
    batch = _draw_nucleus(PROBS.repeat(4, 1), 0.9, [torch.Generator().manual_seed(i) for i in range(4)])
    alone = [int(_draw_nucleus(PROBS[None], 0.9, [torch.Generator().manual_seed(i)])[0]) for i in range(4)]
    assert batch.tolist() == alone


def test_top_k_keeps_the_k_likeliest_then_applies_top_p_among_them() -> None:
    probs, ids = _top_k(PROBS.log()[None], SampleSettings(temperature=1.0, top_k=4, top_p=0.6))
    assert ids[0].tolist() == [0, 1, 2, 3]
    # among the top 4 (mass 0.8) the shares are .375, .3125, .1875, .125: top-p 0.6 keeps the first two
    assert torch.allclose(probs[0], torch.tensor([0.375, 0.3125, 0, 0]) / 0.6875, atol=1e-6)
