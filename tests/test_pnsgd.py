"""PNSGD training on real digits: validation of parameters, determinism, learning events."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.datasets import load_digits_dataset
from models.learning_events import PROXIES
from models.logreg import accuracy
from models.pnsgd import PnsgdRecipe, initial_weights, run_pnsgd
from models.training import train_model


@pytest.fixture(scope="module")
def digits():
    return load_digits_dataset()


def test_digits_split_ids_and_unit_norm(digits) -> None:
    assert digits.sample_ids[17] == "digits-17" and digits.subject_ids[17] == "subject-4"
    assert int(digits.is_train.sum()) == 1437
    np.testing.assert_allclose(np.linalg.norm(digits.features, axis=1), 1.0, rtol=1e-6)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("sigma", 0.0, "sigma"),
        ("m", -1.0, "m "),
        ("batch_size", 5000, "batch_size"),
        ("eta", 5.0, "eta"),
    ],
)
def test_invalid_recipe_names_the_parameter(field: str, value: float, match: str) -> None:
    recipe = PnsgdRecipe(**{field: value})
    with pytest.raises(ValueError, match=match):
        recipe.validate(n=1437, classes=10)


def test_training_learns_and_is_replayable_bit_for_bit(digits) -> None:
    a = train_model(digits, recipe_name="pnsgd", seed=5, overrides={"epochs": 10})
    b = train_model(digits, recipe_name="pnsgd", seed=5, overrides={"epochs": 10})
    assert np.array_equal(a.model.arrays["weights"], b.model.arrays["weights"])
    test = digits.test_rows()
    w = torch.as_tensor(a.model.arrays["weights"])
    assert (
        accuracy(
            w,
            torch.as_tensor(digits.features[test], dtype=torch.float64),
            torch.as_tensor(digits.labels[test]),
        )
        > 0.8
    )
    assert a.cost.grad_evals == 10 * 1437
    means = a.events.proxies()
    assert (a.events.counts == 10).all()
    assert set(means) == set(PROXIES)
    assert np.all(
        (means["confidence"] >= 0) & (means["confidence"] <= means["max_confidence"] + 1e-12)
    )


def test_weights_stay_in_the_projection_ball(digits) -> None:
    recipe = PnsgdRecipe(radius=0.5, epochs=2)
    x, y = digits.features[:200], digits.labels[:200]
    w0 = initial_weights(dim=x.shape[1], classes=10, recipe=recipe, seed=0)
    w = run_pnsgd(w0, x, y, classes=10, recipe=recipe, epochs=2, seed=0)
    assert float(w.norm()) <= 0.5 + 1e-9


def test_digits_rff_keeps_ids_and_split_and_is_data_independent(digits) -> None:
    from models.datasets import load_dataset, random_fourier_features

    rff = load_dataset("digits-rff")
    assert rff.name == "digits-rff" and rff.features.shape == (1797, 513)
    assert np.array_equal(rff.sample_ids, digits.sample_ids) and np.array_equal(
        rff.is_train, digits.is_train
    )
    np.testing.assert_allclose(np.linalg.norm(rff.features, axis=1), 1.0, rtol=1e-6)
    # The map depends on the seed only: row i's features do not change when other rows are dropped.
    pixels = np.random.default_rng(0).random((5, 64))
    full = random_fourier_features(pixels, dim=32, bandwidth=1.0)
    part = random_fourier_features(pixels[:2], dim=32, bandwidth=1.0)
    np.testing.assert_array_equal(full[:2], part)
