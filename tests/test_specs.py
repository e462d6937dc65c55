"""Specs fail at construction with the field, the value and what was allowed; the registry lists tasks."""

from __future__ import annotations

import dataclasses

import pytest

from shared.specs import RUNNABLE, STATUSES, TASKS, SpecError, check_framework, check_task, get_spec, spec_key
from shared.specs.base import TrainSpec
from shared.specs.classification import ClassificationDataSpec, ResNetSpec


@pytest.mark.parametrize("factory,kwargs,message", [
    (ResNetSpec, {"block": "dense"}, r"model.block: expected one of \['basic', 'bottleneck'\]; received: 'dense'"),
    (ResNetSpec, {"head_pool": "median"}, r"model.head_pool: expected one of \['max', 'avg', 'l2'\]"),
    (ResNetSpec, {"depths": (1, 1), "widths": (8,)}, r"model.widths: expected 2 entries; received 1"),
    (ResNetSpec, {"depths": (0, 1), "widths": (8, 8)}, r"model.depths\[0\]: expected an integer in \[1, 64\]"),
    (ResNetSpec, {"num_classes": 1}, r"model.num_classes: expected an integer in \[2, 100000\]; received: 1"),
    (ResNetSpec, {"bn_momentum": 1.5}, r"model.bn_momentum: expected a number in \[0.0, 1.0\]; received: 1.5"),
    (ClassificationDataSpec, {"image_size": 4}, r"data.image_size: expected an integer in \[8, 1024\]"),
    (ClassificationDataSpec, {"dataset": "mnist"}, r"data.dataset: expected one of \['digits', 'shapes'\]"),
    (TrainSpec, {"lr": float("nan")}, r"train.lr: expected a number"),
    (TrainSpec, {"batch_size": 2.5}, r"train.batch_size: expected an integer"),
    (TrainSpec, {"optimizer": "lbfgs"}, r"train.optimizer: expected one of \['sgd', 'adam'\]"),
])
def test_invalid_values_fail_at_construction(factory, kwargs, message):
    with pytest.raises(SpecError, match=message):
        factory(**kwargs)


def test_specs_are_frozen_and_hashable():
    spec = get_spec("classification", "tiny")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.model = None
    assert spec_key(spec) == spec_key(get_spec("classification", "tiny"))
    assert spec_key(spec) != spec_key(get_spec("classification", "standard"))


def test_registry_lists_all_architecture_tasks():
    assert set(TASKS) == {"classification", "augmentation", "transfer_learning", "detection",
                          "semantic_segmentation", "instance_segmentation", "tracking", "ocr", "embedding",
                          "distillation", "class_imbalance", "pooling", "robustness", "distributed"}
    for name, entry in TASKS.items():
        assert entry.status in STATUSES, name
        if entry.status in RUNNABLE:
            assert {"tiny", "standard"} <= set(entry.presets), name


def test_unknown_task_framework_and_preset_list_the_valid_ones():
    with pytest.raises(SpecError, match=r"unknown task 'segmentation'; expected one of \[.*'classification'"):
        check_task("segmentation")
    with pytest.raises(SpecError, match=r"unknown framework 'jax'; expected one of \['torch', 'tensorflow'\]"):
        check_framework("jax")
    with pytest.raises(SpecError, match=r"unknown preset 'huge'.*expected one of \['standard', 'tiny'\]"):
        get_spec("classification", "huge")
    with pytest.raises(SpecError, match=r"task 'tracking' is planned.*tasks that run: "
                                        r"\['augmentation', 'classification', 'detection', 'distillation', 'distributed', "
                                        r"'instance_segmentation', 'ocr', 'semantic_segmentation', 'transfer_learning'\]"):
        check_task("tracking")


def test_data_and_model_class_counts_must_agree():
    spec = get_spec("classification", "tiny")
    wrong = dataclasses.replace(spec, model=dataclasses.replace(spec.model, num_classes=6))
    with pytest.raises(ValueError, match=r"'digits' data set has 10 classes; received: 6"):
        wrong.check_data_matches()
