"""Offline datasets: shape, ids and the unit-norm rows the certified accountants assume."""

from __future__ import annotations

import numpy as np
import pytest

from models.datasets import DATASETS, load_dataset, load_fertility_dataset


def test_fertility_is_the_254k_row_census_extract_with_one_subject_per_row():
    ds = load_fertility_dataset()
    assert ds.features.shape == (254_654, 10)
    assert set(np.unique(ds.labels)) == {0, 1} and ds.classes == 2
    assert 0.3 < ds.labels.mean() < 0.45  # about 38% of the women have a third child
    np.testing.assert_allclose(np.linalg.norm(ds.features, axis=1), 1.0, rtol=1e-5)
    assert len(np.unique(ds.sample_ids)) == len(ds.sample_ids)
    assert np.array_equal(ds.sample_ids, ds.subject_ids)
    assert abs(ds.is_train.mean() - 0.8) < 1e-3


def test_unknown_dataset_names_the_known_ones():
    with pytest.raises(ValueError, match="fertility"):
        load_dataset("nope")
    assert "fertility" in DATASETS
