"""Every way the report runs a model, behind one interface.

A backend turns NHWC numpy images into named numpy outputs. ``run`` is the part
that is timed: it takes the backend's native input (prepared once by
``to_input``) and returns materialised outputs, so every backend is timed from
ready input to ready output and nothing else.

Backend names are part of the results contract (docs/ARCHITECTURE.md): add, never rename.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from shared.data.validate import check_images

BACKENDS = ("torch", "torch-compile", "tensorflow-eager", "tensorflow", "tensorflow-xla", "onnxruntime-from-torch",
            "onnxruntime-from-tensorflow", "tflite-fp32")

# Backends that run the framework's own model object, no exported graph: where a model does not export whole
# (``spec.export_limit``), the ones that run all of it; the others run its export view (``make_runner``).
NATIVE = ("torch", "tensorflow-eager", "tensorflow")

# Quantized backends (seed answers 11 and 28): name -> (framework, the fp32 backend it is compared with).
QUANTIZED = {
    "tflite-fp16": ("tensorflow", "tflite-fp32"),
    "tflite-dynamic": ("tensorflow", "tflite-fp32"),
    "tflite-int8": ("tensorflow", "tflite-fp32"),
    "tflite-int8-qat": ("tensorflow", "tflite-fp32"),
    "torch-int8": ("torch", "torch-compile"),
    "torch-int8-qat": ("torch", "torch-compile"),
    "torch-int8-dynamic": ("torch", "torch"),
    "onnxruntime-torch-int8": ("torch", "onnxruntime-from-torch"),
    "onnxruntime-int8": ("torch", "onnxruntime-from-torch"),
    "onnxruntime-int8-from-tensorflow": ("tensorflow", "onnxruntime-from-tensorflow"),
}
# Quantized variants that train the whole model through its exported graph (pt2e quantization-aware training):
# none for a model whose whole network does not export (``spec.export_limit``); the others quantize its export view.
WHOLE_GRAPH_QUANTIZED = ("torch-int8-qat",)

# Which framework's trained weights each backend runs (exports carry their source's weights).
SOURCE = {"torch": "torch", "torch-compile": "torch", "onnxruntime-from-torch": "torch",
          "tensorflow-eager": "tensorflow", "tensorflow": "tensorflow", "tensorflow-xla": "tensorflow",
          "onnxruntime-from-tensorflow": "tensorflow", "tflite-fp32": "tensorflow"}


@dataclass
class Runner:
    """A ready backend: ``outputs = to_numpy(run(to_input(images)))``.

    ``input_shape`` (height, width, channels; None where the model takes any) is what the images must be:
    every runner checks its input with the same function as the twins' ``predict`` (shared.data.validate), so
    a wrong batch gets the same clear error on every path instead of the framework's own.
    """

    name: str
    to_input: Callable[[np.ndarray], Any]
    run: Callable[[Any], Any]
    to_numpy: Callable[[Any], dict[str, np.ndarray]]
    input_shape: tuple[int | None, int | None, int | None] = (None, None, None)

    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        h, w, c = self.input_shape
        images = check_images(images, channels=c, size=(h, w) if h and w else None, name=f"{self.name} input")
        return self.to_numpy(self.run(self.to_input(images)))

    def predict(self, images: np.ndarray, batch: int = 32) -> dict[str, np.ndarray]:
        """Outputs for any number of images in fixed-size batches (the last padded, then trimmed).

        A fixed batch keeps shape-specialising backends (torch.compile, XLA,
        TFLite) from recompiling for every remainder.
        """
        chunks: dict[str, list[np.ndarray]] = {}
        for start in range(0, len(images), batch):
            part = images[start:start + batch]
            n = len(part)
            if n < batch:
                part = np.concatenate([part, np.repeat(part[-1:], batch - n, axis=0)])
            for key, value in self(part).items():
                chunks.setdefault(key, []).append(value[:n])
        return {key: np.concatenate(parts) for key, parts in chunks.items()}


def set_threads(threads: int) -> None:
    """The same intra-op thread count for torch and TensorFlow (ORT and TFLite take it per session)."""
    import tensorflow as tf
    import torch

    torch.set_num_threads(threads)
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass  # TensorFlow already initialised its runtime in this process: it keeps its pools.


def make_runner(name: str, models: dict, artifacts: dict[str, Path], spec, threads: int) -> Runner:
    """Build backend ``name`` from the trained ``models`` ({framework: model}) and exported ``artifacts``.

    A model that does not export whole (``spec.export_limit``) runs whole on the native backends; on the others
    the backend runs its export view (compiled, or the exported file) and the source framework finishes the
    outputs (``finishing_runner``)."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; expected one of {list(BACKENDS)}")
    keys, graphs = tuple(spec.output_keys), models
    part = getattr(spec, "export_limit", None) and name not in NATIVE
    if part:
        from .exports import export_views
        from .frameworks import load_twins

        graphs, graph_spec = export_views(load_twins(spec.task), models, spec)
        keys = graph_spec.output_keys
    if name in ("torch", "torch-compile"):
        runner = _torch_runner(name, graphs["torch"], keys)
    elif name.startswith("tensorflow"):
        runner = _tf_runner(name, graphs["tensorflow"], keys)
    elif name.startswith("onnxruntime"):
        runner = onnx_runner(name, artifacts[f"onnx-from-{SOURCE[name]}"], threads)
    else:
        runner = tflite_runner(name, artifacts["tflite-fp32"], threads, keys)
    if part:
        runner = finishing_runner(runner, models[SOURCE[name]], spec)
    runner.input_shape = tuple(spec.input_shape)
    return runner


def native_runner(framework: str, model, keys: tuple[str, ...]) -> Runner:
    """A model (or export view) run by its own framework as the ``torch`` / ``tensorflow`` backends run it."""
    return _torch_runner("torch", model, keys) if framework == "torch" else _tf_runner("tensorflow", model, keys)


def finishing_runner(runner: Runner, model, spec) -> Runner:
    """``runner`` holds a model's export view (``spec.export_limit``: the two-stage models' backbone, RPN and RoI-level
    map);
    the framework of ``model`` (that twin's fp32 model) finishes the outputs from the view's, with its twin's
    ``finish_export`` (proposals, NMS and the RoI heads): the runner then serves the whole model, timed whole."""
    from .frameworks import load_twin

    twin = load_twin(_framework_of(model), spec.task)

    def run(feed):
        return twin.task.finish_export(model, spec, runner.to_numpy(runner.run(feed)))

    return Runner(runner.name, runner.to_input, run, lambda out: out, runner.input_shape)


def _framework_of(model) -> str:
    import torch

    return "torch" if isinstance(model, torch.nn.Module) else "tensorflow"   # else a Keras model


def _torch_runner(name: str, model, keys) -> Runner:
    import torch

    from pytorch_impl.tensors import to_native, to_numpy

    model = model.eval()
    fn = torch.compile(model, dynamic=False) if name == "torch-compile" else model

    def run(x):
        with torch.inference_mode():
            return fn(x)

    return Runner(name, to_native, run, lambda out: {k: to_numpy(out[k]) for k in keys})


def _tf_runner(name: str, model, keys) -> Runner:
    import tensorflow as tf

    from tensorflow_impl.tensors import to_native, to_numpy

    if name == "tensorflow-eager":
        call = lambda x: model(x, training=False)  # noqa: E731
    else:
        call = tf.function(lambda x: model(x, training=False), jit_compile=name == "tensorflow-xla",
                           reduce_retracing=True)

    def run(x):
        out = call(x)
        return {k: out[k].numpy() for k in keys}  # materialise: TF may return before the work is done

    return Runner(name, to_native, run, lambda out: {k: to_numpy(out[k]) for k in keys})


def onnx_runner(name: str, path: str | os.PathLike, threads: int) -> Runner:
    """An ONNX file in onnxruntime; NCHW graphs (from torch) get their input transposed at the boundary."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    layout = session.get_modelmeta().custom_metadata_map.get("twinvision.layout", "NHWC")
    input_name = session.get_inputs()[0].name
    names = [o.name for o in session.get_outputs()]

    def to_input(images):
        x = np.ascontiguousarray(images.transpose(0, 3, 1, 2)) if layout == "NCHW" else images
        return {input_name: x}

    # The graph's own input shape (symbolic dimensions, such as the batch, are strings): NHWC for the check.
    dims = [d if isinstance(d, int) else None for d in session.get_inputs()[0].shape]
    shape = (dims[2], dims[3], dims[1]) if layout == "NCHW" else tuple(dims[1:4])
    def to_numpy(out):
        # An NCHW graph's 4-D outputs (a segmenter's per-pixel logits) are NCHW too: back to NHWC, as the
        # torch twin's own outputs are (pytorch_impl/tensors.py: to_numpy).
        if layout == "NCHW":
            out = [np.ascontiguousarray(o.transpose(0, 2, 3, 1)) if o.ndim == 4 else o for o in out]
        return dict(zip(names, out))

    return Runner(name, to_input, lambda feed: session.run(None, feed), to_numpy, shape)


def tflite_runner(name: str, path: str | os.PathLike, threads: int, keys: tuple[str, ...] | None = None) -> Runner:
    """A TFLite flatbuffer in the LiteRT interpreter, through its signature (named inputs and outputs).

    Models converted from tf_keras (the tfmot path) name their outputs after
    layers; a single output is then renamed to the spec's single key.
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    runner = interpreter.get_signature_runner()
    input_name = next(iter(runner.get_input_details()))

    def to_numpy(out: dict) -> dict:
        if keys and set(out) != set(keys) and len(out) == len(keys) == 1:
            return {keys[0]: next(iter(out.values()))}
        return dict(out)

    shape = tuple(int(d) for d in runner.get_input_details()[input_name]["shape"][1:4])  # NHWC
    return Runner(name, lambda images: {input_name: images}, lambda feed: runner(**feed), to_numpy, shape)


def module_runner(name: str, module, keys: tuple[str, ...], input_shape: tuple = (None, None, None)) -> Runner:
    """A torch module run as it is (torch's dynamic int8 of the dense layers)."""
    import torch

    from pytorch_impl.tensors import to_native, to_numpy

    def run(x):
        with torch.no_grad():
            return module(x)

    return Runner(name, to_native, run, lambda out: {k: to_numpy(out[k]) for k in keys}, tuple(input_shape))


def pt2e_int8_runner(name: str, module, keys: tuple[str, ...], input_shape: tuple = (None, None, None)) -> Runner:
    """A pt2e int8 graph on oneDNN's int8 kernels (``pytorch_impl.quantize.lower_for_cpu``), lowered once per input
    shape on its first call, as torch.compile specialises: the warm-up of the timing rule absorbs it."""
    import torch

    from pytorch_impl.quantize import lower_for_cpu
    from pytorch_impl.tensors import to_native, to_numpy

    lowered: dict[tuple, Any] = {}

    def run(x):
        shape = tuple(x.shape)
        if shape not in lowered:
            lowered[shape] = lower_for_cpu(module, x)
        with torch.no_grad():
            return lowered[shape](x)

    return Runner(name, to_native, run, lambda out: {k: to_numpy(out[k]) for k in keys}, tuple(input_shape))


class OnnxRunner:
    """Callable ONNX model on NHWC images (used by the parity levels)."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        self._runner = onnx_runner("onnxruntime", path, threads or 0)

    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        return self._runner(images)
