"""Bad images get a clear error naming the bad value and what was expected, in both twins of every runnable
model of the registry (tests/parity_mixin.py: RUNS), the expected shapes taken from the spec's input_shape.
Targets and raw outputs differ per task: each task's own test file checks those.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shared.data import InputError
from shared.specs import FRAMEWORKS, run_name

from .parity_mixin import RUNS, spec_of, twins_of

# Checks a model does not pass yet: strict expected failures, so the fix shows up as one to delete here.
# Keys: (task or framework, check), as in _cases(check). None today.
GAPS: dict[tuple[str, str], str] = {}


def _cases(check: str | None = None) -> list:
    return [pytest.param((run, fw), id=f"{run_name(*run)}-{fw}", marks=[
        pytest.mark.xfail(reason=GAPS[key], strict=True) for key in ((run[0], check), (fw, check)) if key in GAPS])
        for run in RUNS for fw in FRAMEWORKS]


@pytest.fixture(scope="module")
def case(request):
    """(twin, a model of the run's tiny spec, (H, W, C)) for the parametrised (run, framework)."""
    run, fw = request.param
    spec, twin = spec_of(run), twins_of(run[0])[fw]
    return twin, twin.task.build_model(spec), spec.input_shape


def _good(h, w, c, n=2):
    return np.random.default_rng(0).uniform(size=(n, h, w, c)).astype(np.float32)


def _nan(h, w, c):
    images = _good(h, w, c)
    images[1, 3, 4, 0], images[0, 0, 0, c - 1] = np.nan, np.inf
    return images


BAD_IMAGES = {  # name: (bad images for the input shape (H, W, C), the error expected)
    "rank3": (lambda h, w, c: _good(h, w, c)[0],
              lambda h, w, c: rf"expected rank 4 \[N, H, W, C\] \(NHWC\); received shape \({h}, {w}, {c}\) \(rank 3\)"),
    "channels": (lambda h, w, c: _good(h, w, 1 + (c == 1)),
                 lambda h, w, c: rf"expected {c} channels in the last axis \(NHWC\); received shape \(2, {h}, {w}, "
                                 rf"{1 + (c == 1)}\)"),
    "nchw": (lambda h, w, c: _good(h, w, c).transpose(0, 3, 1, 2),
             lambda h, w, c: rf"expected {c} channels.*received shape \(2, {c}, {h}, {w}\) \(is it NCHW\?"),
    "float64": (lambda *s: _good(*s).astype(np.float64), lambda *s: r"expected dtype float32; received float64"),
    "uint8": (lambda *s: (_good(*s) * 255).astype(np.uint8), lambda *s: r"expected dtype float32; received uint8"),
    "empty": (lambda *s: np.zeros((0, *s), np.float32), lambda *s: r"expected at least one image"),
    "list": (lambda *s: [[1.0]], lambda *s: r"expected a numpy array of shape \[N, H, W, C\]; received list"),
    "nan": (_nan, lambda *s: r"expected finite values; received 2 NaN/inf values"),
}


@pytest.mark.parametrize("bad", BAD_IMAGES)
@pytest.mark.parametrize("case", _cases(), indirect=True)
def test_bad_images_rejected(case, bad):
    twin, model, shape = case
    images, message = BAD_IMAGES[bad]
    with pytest.raises(InputError, match=message(*shape)):
        twin.task.predict(model, images(*shape))


@pytest.mark.parametrize("case", _cases("size"), indirect=True)
def test_wrong_spatial_size(case):
    twin, model, (h, w, c) = case
    with pytest.raises(InputError, match=rf"expected spatial size \({h}, {w}\); received \({h // 2}, {w // 2}\)"):
        twin.task.predict(model, _good(h // 2, w // 2, c, n=1))


@pytest.mark.parametrize("case", _cases("native"), indirect=True)
def test_native_batch_in_the_other_layout(case):
    """The model called directly (no predict): NHWC given to the torch model, NCHW to the Keras model."""
    twin, model, (h, w, c) = case
    if twin.framework == "torch":
        with pytest.raises(InputError, match=rf"expected a native batch of shape \[N, {c}, {h}, {w}\] \(NCHW\)"):
            model(torch.zeros(1, h, w, c))
    else:
        with pytest.raises(InputError, match=rf"expected a native batch of shape \[N, {h}, {w}, {c}\] \(NHWC\)"):
            model(np.zeros((1, c, h, w), np.float32))


UNKNOWN_DEVICE = r"unknown device 'tpu'; expected one of \['cpu', 'cuda', 'auto'\]"


@pytest.mark.parametrize("case", _cases(), indirect=True)
def test_unknown_device(case):
    twin, _, _ = case
    with pytest.raises(ValueError, match=UNKNOWN_DEVICE):
        twin.tensors.resolve_device("tpu")


@pytest.mark.parametrize("case", _cases("device"), indirect=True)
def test_unknown_device_in_predict(case):
    twin, model, shape = case
    with pytest.raises(ValueError, match=UNKNOWN_DEVICE):
        twin.task.predict(model, _good(*shape), device="tpu")


# -- the harness's runners: one input check for every backend, the same as predict's -------------------------

@pytest.fixture(scope="module")
def runners(tmp_path_factory):
    """Every float32 backend of the report (compare.backends.BACKENDS) on the tiny classifier: eager and
    compiled torch and TensorFlow, ONNX Runtime on both exports, TFLite; and a torch module runner as the
    quantized and pruned variants use."""
    from compare import backends as B
    from compare.cache import TaskCache
    from compare.exports import export_all

    run = ("classification", None)
    spec, twins = spec_of(run), twins_of("classification")
    models = {fw: twins[fw].task.build_model(spec) for fw in FRAMEWORKS}
    models["torch"].eval()
    cache = TaskCache(tmp_path_factory.mktemp("exports"), "classification", "tiny", spec)
    exported = export_all(twins, models, spec, cache, only=("onnx-from-torch", "onnx-from-tensorflow",
                                                             "saved_model", "tflite-fp32"))
    assert not exported.errors, exported.errors
    made = {name: B.make_runner(name, models, exported.paths, spec, threads=1) for name in B.BACKENDS}
    made["torch-module"] = B.module_runner("torch-module", models["torch"], tuple(spec.output_keys),
                                           spec.input_shape)
    return made, spec.input_shape


@pytest.mark.parametrize("bad", [*BAD_IMAGES, "size"])
def test_every_runner_checks_its_input_as_predict_does(runners, bad):
    """1 or 4 channels, NCHW, a wrong size...: every backend answers with the check's error (naming the backend),
    never the framework's own ("Given groups=1, weight of size..." or "Depth of input must be a multiple...")."""
    made, (h, w, c) = runners
    if bad == "size":
        images = _good(h // 2, w // 2, c)
        message = rf"expected spatial size \({h}, {w}\); received \({h // 2}, {w // 2}\)"
    else:
        images, message = BAD_IMAGES[bad][0](h, w, c), BAD_IMAGES[bad][1](h, w, c)
    for name, runner in made.items():
        with pytest.raises(InputError, match=message) as caught:
            runner(images)
        assert str(caught.value).startswith(f"{name} input: "), caught.value
    good = _good(h, w, c)
    assert {name: set(runner(good)) for name, runner in made.items()}  # the good batch runs everywhere
