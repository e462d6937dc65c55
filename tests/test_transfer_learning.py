"""Transfer learning: what the registry-driven parity and bad-input tests do not cover.

Frozen layers in both twins (no gradient, weights and BatchNorm statistics untouched by training, the trainable
rest equal between the twins), the targets' splits, the pretrained body taken from the classification run's
cache, and a tiny run of each study.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from compare.parity import gradient_parity, same_init, training_parity
from shared.data.transfer_learning import InputError, load_target
from shared.specs import get_spec
from shared.specs.transfer_learning import STRATEGIES

RUN = ("transfer_learning", None)


def _spec(strategy: str):
    return dataclasses.replace(get_spec("transfer_learning", "tiny"), strategy=strategy)


def _assert_ok(entries: list[dict]) -> None:
    assert entries and all(e["ok"] for e in entries), [e for e in entries if not e["ok"]]


@pytest.mark.parametrize("strategy", ["frozen", "top", "full"])
def test_only_the_trainable_layers_get_gradients_and_they_agree(twins, data, strategy):
    """L2 with layers frozen: the frozen parameters have no gradient in either twin (the same set of keys on both
    sides), and the loss and every trainable gradient agree within the spec's tolerance."""
    spec = _spec(strategy)
    entries = gradient_parity(spec, twins, data.train.images[:8], data.train.targets[:8])
    _assert_ok(entries)
    grads = {e["what"].removeprefix("gradients/") for e in entries if e["what"].startswith("gradients/")}
    params = {k for k, _ in twins["torch"].task.build_model(spec).named_parameters()}
    trainable = {k for k in params if k.startswith(spec.trainable)}
    assert grads == trainable and (strategy == "full") == (trainable == params), sorted(grads)


def test_frozen_layers_do_not_move_in_training(twins, data):
    """Ten SGD steps of the top-stage strategy: every frozen tensor (weights and BatchNorm running statistics) is
    bit for bit what it was in both twins, every trainable one has moved, and L3 holds for the frozen-backbone
    strategy (the head alone)."""
    spec = _spec("top")
    models, start = same_init(twins, spec, "torch", 0)
    batches = [np.arange(i * 16, (i + 1) * 16) for i in range(10)]
    train = dataclasses.replace(spec.train, schedule="constant", lr=0.05)
    for fw, twin in twins.items():
        twin.task.train_steps(models[fw], spec, data.train.images, data.train.targets, batches, train)
        after = twin.bridge.export_weights(models[fw])
        for key, value in start.items():
            frozen = not key.startswith(spec.trainable)
            moved = not np.array_equal(after[key], value)
            if frozen:
                assert not moved, f"{fw}: frozen {key} changed in training"
            elif key.endswith(("weight", "bias")):
                assert moved, f"{fw}: trainable {key} did not move"
    _assert_ok(training_parity(_spec("frozen"), twins, data.train))


def test_keras_batchnorm_not_trainable_uses_running_statistics():
    import tensorflow as tf

    from tensorflow_impl.layers import BatchNorm2d

    layer = BatchNorm2d(4, 1e-5, 0.1)
    x = tf.random.normal((8, 5, 5, 4), seed=1) * 3 + 2
    layer(x, training=False)
    layer.trainable = False
    before = [v.numpy().copy() for v in layer.non_trainable_variables]
    np.testing.assert_array_equal(layer(x, training=True).numpy(), layer(x, training=False).numpy())
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(before, layer.non_trainable_variables))


@pytest.mark.parametrize("target", ["digits", "faces", "textures"])
def test_targets_split_the_same_test_images_for_every_size(target):
    spec = get_spec("transfer_learning", "standard").data
    full = load_target(dataclasses.replace(spec, target=target))
    ten = load_target(dataclasses.replace(spec, target=target, samples_per_class=10))
    assert np.array_equal(full.test.images, ten.test.images) and np.array_equal(full.test.labels, ten.test.labels)
    assert np.bincount(ten.train.labels).tolist() == [10] * len(full.class_names)
    assert full.train.images.shape[1:] == (32, 32, 3) and full.train.images.dtype == np.float32
    assert 0.0 <= full.train.images.min() and full.train.images.max() <= 1.0
    if target == "faces":  # lfw_subset: 100 faces, 100 others
        assert np.bincount(np.concatenate([full.train.labels, full.test.labels])).tolist() == [100, 100]
    with pytest.raises(InputError, match="data.samples_per_class: class 0 of the .* training images; received 5000"):
        load_target(dataclasses.replace(spec, target=target, samples_per_class=5000))


def test_pretrained_strategies_need_the_body(twins, data):
    with pytest.raises(ValueError, match="strategy 'top' starts from the trained body of 'classification'"):
        twins["torch"].task.train(_spec("top"), data, progress=False)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A cache holding the tiny classification run's trained model (trained here, as the report does when that
    run has not run), and the run's initialisation reading its body from there."""
    from compare.frameworks import load_twins
    from compare.pipeline import run_cache
    from compare.stages.train import Initialisation
    from compare.tasks.transfer_learning import ensure_source

    root = tmp_path_factory.mktemp("cache")
    cache_of = lambda run: run_cache(root, run, "tiny")  # noqa: E731
    ensure_source(_spec("top"), None, "tiny", cache_of, lambda line: None)
    return root, Initialisation(load_twins("transfer_learning"), cache_of)


def test_the_initialisation_takes_the_classification_body_and_a_new_head(source, twins):
    from shared import weights as W

    root, init = source
    trained = W.load_file(next(root.glob("classification-tiny-*")) / "trained-torch.safetensors")
    for strategy in ("top", "scratch"):
        spec = _spec(strategy)
        tensors = twins["tensorflow"].bridge.export_weights(init.model("tensorflow", spec))
        body = [k for k in tensors if k.startswith(spec.body_keys)]
        same = [np.array_equal(tensors[k], trained[k]) for k in body]
        assert all(same) if strategy == "top" else not any(same), strategy
        assert tensors["fc.weight"].shape == (5, 16)  # the target's five classes, not the source's ten


def test_each_study_runs_on_the_tiny_preset(source, twins, tmp_path, monkeypatch):
    """Every study at a short version of the quick plan (8 steps a cell, the port on 5 digits a class: the
    tables, plots and verdicts, not the accuracies, are under test)."""
    from compare.cache import TaskCache
    from compare.studies import StudyContext
    from compare.tasks import transfer_learning as T
    from compare.tasks.transfer_learning import PLANS, PLUGIN

    monkeypatch.setitem(PLANS, "quick", dataclasses.replace(PLANS["quick"], steps=8, port_per_class=5))
    assert T._plan(type("Ctx", (), {"profile": "quick"})()).steps == 8
    _, init = source
    spec = get_spec("transfer_learning", "tiny")
    ctx = StudyContext(spec, None, twins, {}, TaskCache(tmp_path, "transfer_learning", "tiny", spec),
                       lambda line: None, init.model, "quick", "tiny")
    results = {study.name: study.run(ctx) for study in PLUGIN.studies}
    plan = PLANS["quick"]
    textures = results["target-textures"]
    assert len(textures["rows"]) == 2 * len(plan.sizes) * len(STRATEGIES)
    assert {r["strategy"] for r in textures["rows"]} == set(STRATEGIES)
    assert len(textures["verdicts"]) == 3 and textures["plot"]["errors"]
    assert results["target-digits"]["rows"] == []  # standard profile only
    port = results["resnet18-port"]
    assert port["parity"][0]["ok"], port["parity"]
    assert all(r["feature_dim"] == 512 for r in port["rows"])
