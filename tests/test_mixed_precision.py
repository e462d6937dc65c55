"""Mixed precision (shared/precision.py, pytorch_impl/precision.py, tensorflow_impl/precision.py): each twin at
bfloat16 and float16 against itself at float32, and the twins against each other at one precision, within the
spec's mixed-precision tolerances (a multiple of the format's unit roundoff for outputs and loss; a measured
bound for gradients). On a trained tiny classifier, so that activations are those of a working model."""

from __future__ import annotations

import numpy as np
import pytest

from compare.frameworks import load_twins
from compare.parity import mixed_precision_parity
from shared.data import load, training_targets
from shared.precision import PRECISIONS, check_precision, tolerance
from shared.specs import get_spec

TASK, PRESET = "classification", "tiny"


@pytest.fixture(scope="module")
def setting():
    import torch

    spec, twins = get_spec(TASK, PRESET), load_twins(TASK)
    data = load(spec)
    torch.manual_seed(0)
    model, _ = twins["torch"].task.train(spec, data, progress=False)
    return spec, twins, data, twins["torch"].bridge.export_weights(model)


@pytest.fixture(scope="module")
def parity(setting):
    spec, twins, data, weights = setting
    return mixed_precision_parity(spec, twins, weights, data.test.images[:32],
                                  training_targets(data.test, spec)[:32])


def _show(entries: list[dict]) -> str:
    return "\n".join(f"{e['a']} vs {e['b']} {e['what']}: {e['max_abs']:.3g} > {e['tol']:.3g}" for e in entries)


def test_each_twin_at_low_precision_stays_within_its_tolerance_of_float32(parity):
    entries, _ = parity
    own = [e for e in entries if e["a"].split("-")[0] == e["b"].split("-")[0]]
    assert len(own) == 2 * 2 * 3  # two twins, two precisions: outputs, loss, gradients
    assert all(e["ok"] for e in own), _show([e for e in own if not e["ok"]])
    # and the low formats really were used: at float32 the outputs would agree to about 1e-7 of their scale
    tol = get_spec(TASK, PRESET).tolerances
    for e in own:
        if "/outputs/" in e["what"]:
            scale = e["tol"] / tolerance(tol, e["what"].split("/")[1], "outputs")
            assert e["max_abs"] / scale > 1e-5, e


def test_the_twins_agree_with_each_other_at_each_precision(parity):
    entries, outputs = parity
    cross = [e for e in entries if e["a"].startswith("torch-") and e["b"].startswith("tensorflow-")]
    assert {e["what"].split("/")[1] for e in cross} == {"bfloat16", "float16"}
    assert all(e["ok"] for e in cross), _show([e for e in cross if not e["ok"]])
    for precision in ("bfloat16", "float16"):  # the same decisions on the held-out images
        a, b = (outputs[fw, precision]["logits"].argmax(1) for fw in ("torch", "tensorflow"))
        assert (a == b).mean() >= 0.9


def test_tolerances_come_from_the_format_and_precisions_are_checked():
    tol = get_spec(TASK, PRESET).tolerances
    assert tolerance(tol, "bfloat16", "outputs") == pytest.approx(tol.mixed_roundoffs * 2 ** -8)
    assert tolerance(tol, "float16", "outputs") == pytest.approx(tol.mixed_roundoffs * 2 ** -11)
    assert tolerance(tol, "float32", "outputs") == tol.forward
    assert tolerance(tol, "float16", "gradients") == tol.float16_gradients
    assert PRECISIONS == ("float32", "bfloat16", "float16")
    with pytest.raises(ValueError, match=r"unknown precision 'fp8'; expected one of \['float32', 'bfloat16', "
                                         r"'float16'\]"):
        check_precision("fp8")


def test_a_keras_model_runs_only_at_the_precision_it_was_built_with(setting):
    spec, twins, data, weights = setting
    t = twins["tensorflow"]
    model = t.bridge.import_weights(t.precision.build_model(t.task, spec, "bfloat16"), weights)
    with pytest.raises(ValueError, match=r"built with dtype policy 'mixed_bfloat16'; precision 'float16' needs "
                                         r"'mixed_float16'"):
        t.precision.forward(model, data.test.images[:2], spec, "float16")
    import keras

    assert keras.config.dtype_policy().name == "float32"  # the policy is restored after building


def test_float32_through_the_precision_path_is_the_twin_itself(setting):
    """At float32 the precision path is the twin's own forward pass (TensorFlow's predict runs a compiled
    function, the path an eager call: the same up to float32 rounding, L1's tolerance)."""
    spec, twins, data, weights = setting
    images = data.test.images[:8]
    for fw, t in twins.items():
        model = t.bridge.import_weights(t.precision.build_model(t.task, spec, "float32"), weights)
        plain = t.task.predict(model, images)["logits"]
        found = t.precision.forward(model, images, spec, "float32")["logits"]
        assert np.abs(found - plain).max() <= spec.tolerances.forward * np.abs(plain).max(), fw


@pytest.mark.gpu
def test_mixed_precision_on_a_gpu_stays_within_the_same_tolerances(setting):
    """torch autocast and Keras' mixed policies on CUDA (tensor cores, float32 accumulation)."""
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU; none on this machine")
    spec, twins, data, weights = setting
    entries, _ = mixed_precision_parity(spec, twins, weights, data.test.images[:32],
                                        training_targets(data.test, spec)[:32], device="cuda")
    assert all(e["ok"] for e in entries), _show([e for e in entries if not e["ok"]])
