"""Learning-event accumulator: buffered vectorised recording equals a per-observation oracle."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.datasets import load_breast_cancer_dataset, load_digits_dataset
from models.learning_events import PROXIES, LearningEvents
from models.pnsgd import PnsgdRecipe, initial_weights, run_pnsgd
from models.sisa import SisaRecipe, train_sisa


def _probs(correct: list[bool], labels: list[int]) -> torch.Tensor:
    """Two-class probabilities putting 0.8 on the label when `correct`, else on the other class."""
    p = torch.full((len(labels), 2), 0.2, dtype=torch.float64)
    for i, (ok, y) in enumerate(zip(correct, labels, strict=True)):
        p[i, y if ok else 1 - y] = 0.8
    return p


def _oracle(n: int, observations: list[tuple[int, bool]]) -> np.ndarray:
    """Toneva et al., ICLR 2019, sec. 2, one observation at a time in training order."""
    last, ever, count = [False] * n, [False] * n, [0] * n
    seen = [0] * n
    for row, ok in observations:
        count[row] += last[row] and not ok
        last[row], seen[row] = ok, seen[row] + 1
        ever[row] |= ok
    never = max(seen) + 1
    return np.array(
        [math.nan if not seen[i] else (count[i] if ever[i] else never) for i in range(n)]
    )


def test_forgetting_events_match_the_oracle_across_buffer_flushes_and_repeats():
    rng = np.random.default_rng(0)
    n, labels = 7, [0, 1, 0, 1, 1, 0, 1]
    events, observed = LearningEvents.zeros(n), []
    for _ in range(40):  # batches of 1-4 rows; rows 0-5 only (row 6 is never seen)
        rows = rng.choice(6, size=int(rng.integers(1, 5)), replace=False)
        ok = [bool(v) for v in rng.random(len(rows)) < 0.6]
        ok = [False if r == 5 else o for r, o in zip(rows, ok, strict=True)]  # never learned
        events.record(
            torch.as_tensor(rows), _probs(ok, [labels[r] for r in rows]), torch.tensor(labels)[rows]
        )
        observed += list(zip(rows.tolist(), ok, strict=True))
    got = events.proxies()
    expected = _oracle(n, observed)
    np.testing.assert_array_equal(got["forgetting_events"], expected)
    assert got["forgetting_events"][5] > np.nanmax(got["forgetting_events"][:5])
    assert math.isnan(got["confidence"][6])
    counts = np.bincount([r for r, _ in observed], minlength=n)
    np.testing.assert_array_equal(events.counts.numpy(), counts)
    accuracy = [np.mean([ok for r, ok in observed if r == i]) for i in range(6)]
    np.testing.assert_allclose(got["binary_accuracy"][:6], accuracy)
    assert set(got) == set(PROXIES)


def test_add_at_places_a_part_at_its_positions():
    part = LearningEvents.zeros(2)
    labels = torch.tensor([0, 1])
    for ok in ([True, False], [False, False], [True, True]):
        part.record(torch.tensor([0, 1]), _probs(ok, [0, 1]), labels)
    whole = LearningEvents.zeros(5)
    whole.add_at(np.array([3, 1]), part)
    got = whole.proxies()
    assert got["forgetting_events"][3] == 1  # right, wrong, right
    assert got["forgetting_events"][1] == 0  # wrong, wrong, right: learned late, never forgotten
    assert np.isnan(got["forgetting_events"][[0, 2, 4]]).all()
    np.testing.assert_array_equal(whole.counts.numpy(), [0, 3, 0, 3, 0])
    with pytest.raises(ValueError, match="positions must name all 2 rows"):
        whole.add_at(np.array([0]), part)


def test_logits_and_probabilities_record_the_same_observations():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn((6, 1, 5, 3), generator=gen)  # 6 mini-batches of a 1-member ensemble
    labels = torch.randint(0, 3, (6, 1, 5), generator=gen)
    rows = torch.stack([torch.randperm(10, generator=gen)[:5] for _ in range(6)]).unsqueeze(1)
    by_probs, by_logits, mixed = (LearningEvents.zeros(10) for _ in range(3))
    for b in range(6):
        by_probs.record(rows[b, 0], torch.softmax(logits[b, 0], dim=1), labels[b, 0])
        by_logits.record_logits(rows[b], logits[b], labels[b])
        if b % 2:
            mixed.record_logits(rows[b], logits[b], labels[b])
        else:
            mixed.record(rows[b, 0], torch.softmax(logits[b, 0], dim=1), labels[b, 0])
    expected = by_probs.proxies()
    for events in (by_logits, mixed):
        got = events.proxies()
        for name in PROXIES:
            np.testing.assert_allclose(got[name], expected[name], rtol=1e-6, equal_nan=True)


@pytest.mark.parametrize("loader", [load_digits_dataset, load_breast_cancer_dataset])
def test_recording_events_leaves_linear_training_bit_for_bit_unchanged(loader):
    # PNSGD and SISA hand the probabilities they record to the gradient instead of a second pass.
    ds = loader()
    x, y = ds.features[ds.train_rows()][:300], ds.labels[ds.train_rows()][:300]
    pn = PnsgdRecipe(epochs=2)
    w0 = initial_weights(dim=x.shape[1], classes=ds.classes, recipe=pn, seed=0)
    kw = {"classes": ds.classes, "recipe": pn, "epochs": 2, "seed": 1}
    events = LearningEvents.zeros(len(y))
    assert torch.equal(run_pnsgd(w0, x, y, **kw), run_pnsgd(w0, x, y, **kw, events=events))
    assert (events.counts == 2).all()
    sisa = SisaRecipe(shards=2, slices=2, epochs_per_slice=1)
    plain = train_sisa(x, y, classes=ds.classes, recipe=sisa, seed=0)
    recorded = train_sisa(
        x, y, classes=ds.classes, recipe=sisa, seed=0, events=LearningEvents.zeros(len(y))
    )
    assert torch.equal(plain.slice_checkpoints, recorded.slice_checkpoints)


def test_folds_with_and_without_repeated_rows_agree_with_the_oracle():
    # Each epoch folded on its own (one look per row and fold) vs all epochs in one fold.
    gen = torch.Generator().manual_seed(1)
    n, epochs = 12, 6
    labels = torch.randint(0, 2, (n,), generator=gen)
    per_epoch, one_fold, observed = LearningEvents.zeros(n), LearningEvents.zeros(n), []
    for _ in range(epochs):
        for rows in torch.split(torch.randperm(n, generator=gen), 5):
            ok = (torch.rand(len(rows), generator=gen) < 0.7).tolist()
            probs = _probs(ok, labels[rows].tolist())
            per_epoch.record(rows, probs, labels[rows])
            one_fold.record(rows, probs, labels[rows])
            observed += list(zip(rows.tolist(), ok, strict=True))
        per_epoch.proxies()  # folds the epoch now
    expected = _oracle(n, observed)
    for events in (per_epoch, one_fold):
        np.testing.assert_array_equal(events.proxies()["forgetting_events"], expected)
