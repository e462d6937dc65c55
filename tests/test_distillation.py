"""Knowledge distillation: what the registry-driven parity and bad-input tests do not cover.

The KD loss of both twins against a float64 reference and each other (1e-6), its gradient against the closed
form, alpha = 1 as plain cross-entropy, the packed targets' checks, the ridge teacher, the classification
teacher attached from (and stored to) the classification run's cache, and a tiny run of each study.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
import torch

from shared import weights as W
from shared.data.distillation import InputError, check_targets, pack_targets, ridge_teacher
from shared.specs import get_spec
from shared.specs.distillation import DistillationLossSpec

RUN = ("distillation", None)
KD_TOLERANCE = 1e-6  # relative: the bound for the loss across frameworks


def _logits(seed: int, n: int = 16, classes: int = 6, scale: float = 3.0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((n, classes)) * scale).astype(np.float32)


def _reference(student, teacher, labels, alpha, t) -> dict:
    """The KD loss in float64 numpy: alpha * CE + (1 - alpha) * T^2 * mean_i KL(p_teacher_i || p_student_i)."""
    def log_softmax(x):
        x = x.astype(np.float64)
        x = x - x.max(axis=1, keepdims=True)
        return x - np.log(np.exp(x).sum(axis=1, keepdims=True))

    ce = -log_softmax(student)[np.arange(len(labels)), labels].mean()
    lt, ls = log_softmax(teacher / t), log_softmax(student / t)
    soft = t * t * (np.exp(lt) * (lt - ls)).sum(axis=1).mean()
    return {"loss_classifier": ce, "loss_distillation": soft, "loss": alpha * ce + (1 - alpha) * soft}


@pytest.mark.parametrize("temperature", [1.0, 4.0, 8.0])
@pytest.mark.parametrize("alpha", [0.0, 0.1, 0.5, 1.0])
@pytest.mark.parametrize("teacher_scale", [3.0, 30.0])  # 30: a confident teacher, classes at p < 1e-7 at T = 1
def test_kd_loss_matches_the_reference_in_both_twins(twins, temperature, alpha, teacher_scale):
    student, teacher = _logits(0), _logits(1, scale=teacher_scale)
    labels = np.random.default_rng(2).integers(0, 6, 16)
    distill = DistillationLossSpec(alpha=alpha, temperature=temperature)
    expected = _reference(student, teacher, labels, alpha, temperature)
    found = {
        "torch": twins["torch"].task.distillation_loss(torch.from_numpy(student), torch.from_numpy(teacher),
                                                       torch.from_numpy(labels), distill),
        "tensorflow": twins["tensorflow"].task.distillation_loss(tf.constant(student), tf.constant(teacher),
                                                                 tf.constant(labels), distill),
    }
    values = {fw: {k: float(v) for k, v in terms.items()} for fw, terms in found.items()}
    for key, want in expected.items():
        for fw in values:
            assert abs(values[fw][key] - want) <= KD_TOLERANCE * max(abs(want), 1e-3), (fw, key, values[fw][key], want)
        assert abs(values["torch"][key] - values["tensorflow"][key]) <= KD_TOLERANCE * max(abs(want), 1e-3), key
    if alpha == 1.0:  # the scratch student of the studies: cross-entropy alone
        assert values["torch"]["loss"] == pytest.approx(values["torch"]["loss_classifier"], rel=1e-7)


def test_kd_gradient_is_the_closed_form_in_both_twins(twins):
    """d loss / d student logits = [alpha (softmax(s) - onehot) + (1 - alpha) T (softmax(s/T) - softmax(t/T))] / N:
    the T^2 factor keeps the soft term's gradient on the hard term's scale."""
    student, teacher, labels = _logits(3), _logits(4), np.arange(16) % 6
    distill = DistillationLossSpec(alpha=0.3, temperature=4.0)

    def softmax(x):
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    t, a = distill.temperature, distill.alpha
    expected = (a * (softmax(student) - np.eye(6)[labels])
                + (1 - a) * t * (softmax(student / t) - softmax(teacher / t))) / len(labels)
    s_torch = torch.from_numpy(student).requires_grad_()
    twins["torch"].task.distillation_loss(s_torch, torch.from_numpy(teacher), torch.from_numpy(labels),
                                          distill)["loss"].backward()
    s_tf = tf.Variable(student)
    with tf.GradientTape() as tape:
        loss = twins["tensorflow"].task.distillation_loss(s_tf, tf.constant(teacher), tf.constant(labels),
                                                          distill)["loss"]
    scale = np.abs(expected).max()
    assert np.abs(s_torch.grad.numpy() - expected).max() <= 1e-6 * scale
    assert np.abs(tape.gradient(loss, s_tf).numpy() - expected).max() <= 1e-6 * scale


def test_packed_targets_refuse_bad_input():
    labels, logits = np.array([0, 2, 1]), _logits(5, n=3, classes=3)
    packed = pack_targets(labels, logits)
    assert packed.shape == (3, 4) and packed.dtype == np.float32 and list(packed[:, 0]) == [0, 2, 1]
    with pytest.raises(InputError, match=r"expected shape \[3, classes\]"):
        pack_targets(labels, logits[:2])
    with pytest.raises(InputError, match="expected finite values; received 3 NaN"):
        pack_targets(labels, np.where(np.eye(3, dtype=bool), np.nan, logits))
    with pytest.raises(InputError, match=r"expected float32 \[N, 4\]"):
        check_targets(packed[:, :3], 3)
    fractional = packed.copy()
    fractional[0, 0] = 0.5
    with pytest.raises(InputError, match="integer labels"):
        check_targets(fractional, 3)
    out_of_range = packed.copy()
    out_of_range[0, 0] = 7
    with pytest.raises(InputError, match=r"values in \[0, 3\)"):
        check_targets(out_of_range, 3)


def test_a_split_without_teacher_logits_says_where_they_come_from():
    from shared.data import load

    spec = get_spec("distillation", "standard")
    split = load(dataclasses.replace(spec, data=dataclasses.replace(spec.data, n_train=12, n_test=6))).train
    with pytest.raises(InputError, match="no teacher logits yet; the report attaches"):
        _ = split.targets


def test_ridge_teacher_is_a_real_classifier(data):
    """The tiny preset's teacher: deterministic, finite, well above chance on held-out digits, and softened
    by its fitted scale (neither one-hot nor uniform)."""
    spec = get_spec("distillation", "tiny")
    train_logits, test_logits = ridge_teacher(data.train, data.test, spec.model.num_classes, spec.ridge)
    again = ridge_teacher(data.train, data.test, spec.model.num_classes, spec.ridge)
    assert np.array_equal(train_logits, again[0]) and np.isfinite(test_logits).all()
    assert (test_logits.argmax(1) == data.test.labels).mean() >= 0.85
    p = np.exp(test_logits - test_logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    assert 0.5 < p.max(1).mean() < 0.995


@pytest.fixture(scope="module")
def attached(tmp_path_factory):
    """The tiny distillation data with the tiny classification model as teacher (trained into a temporary
    cache, as the report does when the classification run has not run yet)."""
    from compare.pipeline import run_cache
    from compare.tasks.distillation import attach_teacher
    from shared.data import load

    root = tmp_path_factory.mktemp("cache")
    spec = dataclasses.replace(get_spec("distillation", "tiny"), teacher="classification")
    lines: list[str] = []
    data = attach_teacher(spec, load(spec), "tiny", lambda run: run_cache(root, run, "tiny"), lines.append)
    return spec, data, root, lines


def test_the_classification_teacher_is_stored_for_its_run_and_reused(attached):
    from compare.pipeline import run_cache
    from compare.tasks.distillation import attach_teacher
    from shared.data import load

    spec, data, root, lines = attached
    stored = run_cache(root, "classification", "tiny").path("trained-torch.safetensors")
    assert stored.exists()
    assert run_cache(root, "classification", "tiny").path("trained-torch.history.json").exists()
    assert "training the classification model" in lines[0] and lines[0].startswith("    teacher: ")
    teacher_accuracy = (data.test.teacher_logits.argmax(1) == data.test.labels).mean()
    assert teacher_accuracy >= 0.8, teacher_accuracy  # the tiny classifier after its 6 epochs
    again: list[str] = []
    second = attach_teacher(spec, load(spec), "tiny", lambda run: run_cache(root, run, "tiny"), again.append)
    assert "cached" in again[0] and np.array_equal(second.train.teacher_logits, data.train.teacher_logits)
    assert data.train.targets.shape == (len(data.train), 1 + spec.model.num_classes)


def test_each_study_runs_on_the_tiny_preset(attached, twins, tmp_path, smoke_timing):
    """The three studies at the quick profile's plan with a network teacher, 2 epochs a student: their tables,
    plots and verdicts (not the accuracies) are under test."""
    from compare.cache import TaskCache
    from compare.parity import same_init
    from compare.studies import StudyContext
    from compare.tasks.distillation import PLANS, PLUGIN

    spec, data, _, _ = attached
    spec = dataclasses.replace(spec, train=dataclasses.replace(spec.train, epochs=2))
    models, _ = same_init(twins, spec, "torch", 0)
    trained = {fw: twins[fw].task.train(spec, data, model=models[fw], progress=False)[0] for fw in twins}
    cache = TaskCache(tmp_path, "distillation", "tiny", spec)
    twins["torch"].bridge.save_weights(trained["torch"], cache.path("trained-torch.safetensors"), {})

    def initial_model(fw, s):  # the report's Initialisation: the seed's torch draw, in both frameworks
        return same_init(twins, s, "torch", s.train.seed)[0][fw]

    ctx = StudyContext(spec, data, twins, trained, cache, lambda line: None, initial_model, "quick", "tiny")
    results = {study.name: study.run(ctx) for study in PLUGIN.studies}
    plan = PLANS["quick"]
    seeds = results["scratch-vs-distilled"]
    assert len(seeds["rows"]) == 4 and all(r["seeds"] == plan.seeds for r in seeds["rows"])
    assert seeds["plot"]["errors"] and seeds["verdicts"][0]["verdict"] in ("supported", "refuted", "mixed")
    sweep = results["temperature-alpha"]
    assert len(sweep["rows"]) == 2 * len(plan.temperatures) * len(plan.alphas)
    table = results["teacher-student"]
    teacher = [r for r in table["rows"] if r["model"] == "teacher"]
    student = [r for r in table["rows"] if r["model"] == "distilled student"]
    assert len(teacher) == len(student) == 2
    assert all(t["parameters"] > 3 * s["parameters"] for t, s in zip(teacher, student))  # tiny: 8/16 vs 4/8
    assert all(r["p50_ms_b1"] > 0 and r["p50_ms_b32"] > 0 for r in teacher + student)
    assert table["verdicts"][0]["verdict"] in ("supported", "refuted", "mixed")


def test_the_online_distiller_computes_the_offline_loss_and_trains_the_student_only(attached, twins):
    """The Distiller (the teacher called in every step, as the Keras guide writes it) gives the loss the task's
    offline targets give, in both twins; its step moves the student and leaves the teacher as it was."""
    from compare.frameworks import load_twins

    spec, data, _, _ = attached
    teachers = load_twins("classification")
    teacher_weights = W.load_file(data.teacher_weights)
    images, labels = data.train.images[:16], data.train.labels[:16]
    for fw, twin in twins.items():
        teacher = teachers[fw].bridge.import_weights(teachers[fw].task.build_model(get_spec("classification", "tiny")),
                                                     teacher_weights)
        student = twin.task.build_model(spec)
        distiller = twin.task.Distiller(student, teacher, spec)
        x = twin.tensors.to_native(images)
        if fw == "torch":
            distiller.train()
            online = twin.task.distillation_loss(*(distiller(x)[k] for k in ("logits", "teacher_logits")),
                                                 torch.from_numpy(labels), spec.distill)
            offline = twin.task.compute_loss({"logits": distiller.student(x)["logits"]},
                                             torch.from_numpy(data.train.targets[:16]), spec)
            optimizer = torch.optim.SGD(student.parameters(), lr=0.1)
            step = lambda: distiller.train_step(x, torch.from_numpy(labels), optimizer)  # noqa: E731
        else:
            out = distiller(x, training=True)
            online = twin.task.distillation_loss(out["logits"], out["teacher_logits"], tf.constant(labels),
                                                 spec.distill)
            offline = twin.task.compute_loss({"logits": student(x, training=True)["logits"]},
                                             tf.constant(data.train.targets[:16]), spec)
            import keras

            distiller.compile(optimizer=keras.optimizers.SGD(0.1))
            step = lambda: distiller.train_on_batch(x, labels)  # noqa: E731
        for key in ("loss_classifier", "loss_distillation", "loss"):
            assert abs(float(online[key]) - float(offline[key])) <= 1e-5 * abs(float(offline[key])), (fw, key)
        before_teacher = teachers[fw].bridge.export_weights(teacher)
        before_student = twin.bridge.export_weights(student)
        step()
        after_teacher, after_student = teachers[fw].bridge.export_weights(teacher), twin.bridge.export_weights(student)
        assert all(np.array_equal(before_teacher[k], after_teacher[k]) for k in before_teacher), fw
        assert not np.array_equal(before_student["fc.weight"], after_student["fc.weight"]), fw
