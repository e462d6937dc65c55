"""Offline data: deterministic, NHWC float32 in [0, 1], real images underneath."""

from __future__ import annotations

import numpy as np
import pytest

from shared.data import batch_plan, shape_mask
from shared.data.classification import load_classification
from shared.specs.classification import SHAPE_CLASSES, ClassificationDataSpec


@pytest.mark.parametrize("dataset,classes", [("digits", 10), ("shapes", len(SHAPE_CLASSES))])
def test_splits_are_deterministic_nhwc_float32(dataset, classes):
    spec = ClassificationDataSpec(dataset=dataset, image_size=24, n_train=60, n_test=30, seed=3)
    a, b = load_classification(spec), load_classification(spec)
    for split_a, split_b, n in ((a.train, b.train, 60), (a.test, b.test, 30)):
        assert split_a.images.shape == (n, 24, 24, 3) and split_a.images.dtype == np.float32
        assert split_a.labels.dtype == np.int64 and split_a.labels.max() < classes
        np.testing.assert_array_equal(split_a.images, split_b.images)
        assert 0.0 <= split_a.images.min() and split_a.images.max() <= 1.0
        assert split_a.images.std() > 0.05, "images are (nearly) constant"
    assert len(a.class_names) == classes


def test_seed_changes_data_and_splits_differ():
    base = ClassificationDataSpec(dataset="shapes", image_size=16, n_train=12, n_test=12)
    a = load_classification(base)
    b = load_classification(ClassificationDataSpec(dataset="shapes", image_size=16, n_train=12, n_test=12, seed=1))
    assert not np.array_equal(a.train.images, b.train.images)
    assert not np.array_equal(a.train.images, a.test.images)


def test_image_i_does_not_depend_on_split_size():
    small = load_classification(ClassificationDataSpec(dataset="shapes", image_size=16, n_train=6, n_test=2))
    big = load_classification(ClassificationDataSpec(dataset="shapes", image_size=16, n_train=12, n_test=2))
    # Labels are shuffled per size, but image i is drawn from generator (seed, split, i) alone.
    assert small.train.images.shape[0] == 6 and big.train.images.shape[0] == 12


def test_digits_too_many_requested():
    from shared.data import InputError

    with pytest.raises(InputError, match="digits set has 1797 images"):
        load_classification(ClassificationDataSpec(dataset="digits", n_train=1500, n_test=500))


@pytest.mark.parametrize("kind", SHAPE_CLASSES)
def test_each_shape_is_drawn_where_asked(kind):
    mask = shape_mask(kind, (20.0, 12.0), 8.0, 0.3, (32, 40))
    ys, xs = np.nonzero(mask)
    assert mask.sum() > 20
    assert abs(xs.mean() + 0.5 - 20.0) < 2.0 and abs(ys.mean() + 0.5 - 12.0) < 2.0


def test_batch_plan_covers_every_sample_once_per_epoch():
    plan = batch_plan(10, 4, 3, seed=0)
    assert len(plan) == 3 and [len(b) for b in plan[0]] == [4, 4, 2]
    for epoch in plan:
        assert sorted(np.concatenate(epoch).tolist()) == list(range(10))
    assert not np.array_equal(np.concatenate(plan[0]), np.concatenate(plan[1]))
