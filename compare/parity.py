"""Numerical parity between the twins, levels L1-L4 (docs/ARCHITECTURE.md, "Parity levels").

Every check goes through the twin contract only (build_model, predict,
compute_loss, train_steps, the bridges and exporters), so a new task gets all
four levels by implementing the contract. Each check returns entries of the
results schema: ``{"a", "b", "what", "max_abs", "tol", "ok"}`` where ``tol`` is
the spec's relative tolerance times the reference's max |value|.
"""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
import types
from pathlib import Path
from typing import Callable

import numpy as np

from shared import data as D
from shared import weights as W
from shared.specs import get_spec

from .backends import OnnxRunner, native_runner
from .frameworks import Twin, load_twins
from .tasks import plugin

LEVELS = ("forward", "gradients", "training", "onnx")


def entry(a: str, b: str, what: str, x: np.ndarray, y: np.ndarray, rel_tol: float,
          reference: np.ndarray | None = None) -> dict:
    """Compare ``x`` (from a) and ``y`` (from b); tolerance relative to max |reference| (default x).

    An all-zero reference fails: a comparison of zeros proves nothing.
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.shape != y.shape:
        return {"a": a, "b": b, "what": what, "max_abs": float("inf"), "tol": 0.0, "ok": False,
                "error": f"shape {x.shape} vs {y.shape}"}
    scale = float(np.abs(x if reference is None else reference).max()) if x.size else 0.0
    max_abs = float(np.abs(x - y).max()) if x.size else 0.0
    tol = rel_tol * scale
    result = {"a": a, "b": b, "what": what, "max_abs": max_abs, "tol": tol,
              "ok": bool(np.isfinite(max_abs) and max_abs <= tol and scale > 0)}
    if scale == 0:
        result["error"] = "reference is all zeros: nothing was tested"
    return result


def same_init(twins: dict[str, Twin], spec, source: str, seed: int) -> tuple[dict, dict]:
    """Build both models from one initialisation made by ``source``, BatchNorm made non-trivial."""
    import keras
    import torch

    torch.manual_seed(seed)
    keras.utils.set_random_seed(seed)
    models = {fw: t.task.build_model(spec) for fw, t in twins.items()}
    tensors = W.randomize_batchnorm(twins[source].bridge.export_weights(models[source]), seed)
    for fw, t in twins.items():
        t.bridge.import_weights(models[fw], tensors)
    return models, tensors


def _check_activations(outputs: dict[str, np.ndarray]) -> None:
    for key, value in outputs.items():
        if not np.any(value):
            raise AssertionError(f"output {key!r} is all zeros: the parity check would test nothing")


def forward_parity(spec, twins: dict[str, Twin], images: np.ndarray, seed: int = 0) -> list[dict]:
    """L1: eval-mode outputs (and feature maps) with weights moved each way."""
    entries = []
    for source, other in (("torch", "tensorflow"), ("tensorflow", "torch")):
        models, _ = same_init(twins, spec, source, seed)
        out_a = twins[source].task.predict(models[source], images, with_features=True)
        out_b = twins[other].task.predict(models[other], images, with_features=True)
        _check_activations(out_a)
        for key in out_a:
            entries.append(entry(source, other, f"forward/{key}", out_a[key], out_b[key], spec.tolerances.forward))
    return entries


# L2 compares gradients at one point of weight space. Where a ReLU's input there is within float32 rounding of 0,
# the two frameworks' forward passes (equal to ~1e-7 of the scale) can put it on opposite sides of the kink, and
# the gradient of every layer below differs by that element's whole upstream gradient: not a difference in the
# twins, a non-differentiable probe point (seen on a 32 px segmenter: one of 300,000 ReLU inputs at 1.7e-6 came
# out -2.4e-7 in TensorFlow, a 3% gradient error in the stem). A gradient check is made where the function is
# smooth, as finite-difference checks are: initialisations are drawn until no ReLU input of the PyTorch model in
# training mode lies within KINK_MARGIN of its tensor's largest |value| (twice that gap, 5e-7 of its tensor's
# largest value, and far above a CPU's own rounding, so the same seed is chosen on every machine); if none of
# KINK_PROBES draws is that smooth, the smoothest. A dense-output model has so many ReLU inputs that few draws
# are smooth at a batch of 8: its spec sets fewer images (``tolerances.gradient_images``).
KINK_MARGIN = 1e-6
KINK_PROBES = 8


def relu_margin(model, x) -> float:
    """The smallest nonzero |input| of any ReLU in a training-mode forward pass of the torch ``model`` on the
    native batch ``x``, relative to that input's largest |value| (on a copy: the model's BatchNorm statistics
    stay as they are)."""
    import copy

    import torch
    import torch.nn.functional as F
    from torch.overrides import TorchFunctionMode

    relus = {F.relu, torch.relu, torch.relu_, F.relu_, torch.Tensor.relu}
    margins = [float("inf")]

    class Watch(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            if func in relus:
                values = args[0].detach().abs()
                nonzero = values[values > 0]
                if nonzero.numel():
                    margins.append(float(nonzero.min() / values.max()))
            return func(*args, **(kwargs or {}))

    probe = copy.deepcopy(model).train()
    with torch.no_grad(), Watch():
        probe(x)
    return min(margins)


def gradient_parity(spec, twins: dict[str, Twin], images: np.ndarray, targets, seed: int = 0) -> list[dict]:
    """L2: loss terms and every parameter's gradient, training mode (batch statistics), at the first
    initialisation from ``seed`` on whose forward pass no ReLU input sits on the kink (KINK_MARGIN)."""
    x = twins["torch"].tensors.to_native(images)
    margins = {}
    for probe in range(KINK_PROBES):
        margins[seed + probe] = relu_margin(same_init(twins, spec, "torch", seed + probe)[0]["torch"], x)
        if margins[seed + probe] >= KINK_MARGIN:
            break
    models, _ = same_init(twins, spec, "torch", max(margins, key=margins.get))
    results = {}
    for fw, t in twins.items():
        trainer = t.training.Trainer(models[fw], spec, t.task.compute_loss)
        x = t.tensors.to_native(images)
        results[fw] = trainer.gradients(x, t.tensors.targets_to_native(targets))
    (loss_a, grad_a), (loss_b, grad_b) = results["torch"], results["tensorflow"]
    entries = [entry("torch", "tensorflow", f"loss/{k}", np.array(loss_a[k]), np.array(loss_b[k]),
                     spec.tolerances.forward) for k in loss_a]
    missing = sorted(set(grad_a) ^ set(grad_b))
    if missing:
        entries.append({"a": "torch", "b": "tensorflow", "what": "gradients/keys", "max_abs": float("inf"),
                        "tol": 0.0, "ok": False, "error": f"gradients only one side has: {missing}"})
    for key in sorted(set(grad_a) & set(grad_b)):
        entries.append(entry("torch", "tensorflow", f"gradients/{key}", grad_a[key], grad_b[key],
                             spec.tolerances.gradients))
    return entries


def _flat(grads: dict[str, np.ndarray], keys: list[str]) -> np.ndarray:
    return np.concatenate([np.ravel(grads[k]) for k in keys]) if keys else np.zeros(0)


def mixed_precision_parity(spec, twins: dict[str, Twin], weights: dict[str, np.ndarray], images: np.ndarray,
                           targets, precisions: tuple[str, ...] = ("bfloat16", "float16"), device: str = "cpu"
                           ) -> tuple[list[dict], dict]:
    """Each twin at each of ``precisions`` against itself at float32, and the twins against each other at each
    precision, from the same ``weights``: eval-mode outputs, the training loss and the gradients (all of a
    model's gradients as one vector, relative to its largest float32 one). Tolerances from
    ``shared.precision.tolerance``. Returns the parity entries and the outputs by (framework, precision)."""
    from shared.precision import tolerance

    tol, found = spec.tolerances, {}
    for fw, t in twins.items():
        for precision in ("float32", *precisions):
            model = t.bridge.import_weights(t.precision.build_model(t.task, spec, precision), weights)
            outputs = t.precision.forward(model, images, spec, precision, device)
            loss, grads = t.precision.loss_and_gradients(model, spec, t.task.compute_loss, images, targets,
                                                         precision, device)
            found[fw, precision] = (outputs, loss, grads)
    entries = []

    def compare(a: tuple[str, str], b: tuple[str, str], precision: str) -> None:
        (out_a, loss_a, grad_a), (out_b, loss_b, grad_b) = found[a], found[b]
        name_a, name_b = "-".join(a), "-".join(b)
        for key in out_a:
            entries.append(entry(name_a, name_b, f"mixed/{precision}/outputs/{key}", out_a[key], out_b[key],
                                 tolerance(tol, precision, "outputs")))
        entries.append(entry(name_a, name_b, f"mixed/{precision}/loss", np.array(loss_a), np.array(loss_b),
                             tolerance(tol, precision, "outputs")))
        keys = sorted(set(grad_a) & set(grad_b))
        entries.append(entry(name_a, name_b, f"mixed/{precision}/gradients", _flat(grad_a, keys),
                             _flat(grad_b, keys), tolerance(tol, precision, "gradients")))

    for precision in precisions:
        for fw in twins:
            compare((fw, "float32"), (fw, precision), precision)
        compare(("torch", precision), ("tensorflow", precision), precision)
    return entries, {k: v[0] for k, v in found.items()}


def training_parity(spec, twins: dict[str, Twin], split, seed: int = 0) -> list[dict]:
    """L3: N steps of momentum SGD (with weight decay) from one init on the same batches."""
    tol = spec.tolerances
    train = dataclasses.replace(spec.train, optimizer="sgd", lr=tol.training_lr, momentum=0.9, schedule="constant")
    n = min(len(split), tol.training_samples)
    batches = [idx for epoch in D.batch_plan(n, train.batch_size, tol.training_steps, seed)
               for idx in epoch][:tol.training_steps]
    models, _ = same_init(twins, spec, "torch", seed)
    losses, weights = {}, {}
    for fw, t in twins.items():
        losses[fw] = np.array(t.task.train_steps(models[fw], spec, split.images, split.targets, batches, train))
        weights[fw] = t.bridge.export_weights(models[fw])
    la, lb = losses["torch"], losses["tensorflow"]
    # Per step within rel tol of that step's loss: report the worst step.
    ratio = np.abs(la - lb) / (tol.training_loss * np.abs(la))
    worst = int(np.argmax(ratio))
    entries = [entry("torch", "tensorflow", f"training/loss@step{worst + 1}of{len(la)}", la[worst:worst + 1],
                     lb[worst:worst + 1], tol.training_loss)]
    for key in weights["torch"]:
        if not weights["torch"][key].any() and not weights["tensorflow"][key].any():
            continue  # zero in both after training: a constant zero buffer (the torch LSTM's second bias)
        entries.append(entry("torch", "tensorflow", f"training/{key}", weights["torch"][key],
                             weights["tensorflow"][key], tol.training_weights))
    return entries


def onnx_parity(spec, twins: dict[str, Twin], images: np.ndarray, seed: int = 0,
                workdir: str | Path | None = None) -> list[dict]:
    """L4: each framework against its own ONNX export, and the two exports against each other."""
    models, _ = same_init(twins, spec, "torch", seed)
    if workdir is not None:
        Path(workdir).mkdir(parents=True, exist_ok=True)
    keys = tuple(spec.output_keys)
    with tempfile.TemporaryDirectory() if workdir is None else contextlib.nullcontext(workdir) as tmp:
        outputs, exported = {}, {}
        for fw, t in twins.items():
            # A model that does not export whole (spec.export_limit) exports the part its twin names.
            limited = getattr(spec, "export_limit", None)
            module, keys = t.task.export_view(models[fw], spec) if limited else (models[fw], keys)
            export_spec = types.SimpleNamespace(input_shape=spec.input_shape, output_keys=keys)
            path = t.export.export_onnx(module, export_spec, Path(tmp) / f"{spec.task}-{fw}.onnx")
            outputs[fw] = native_runner(fw, module, keys)(images) if limited else t.task.predict(models[fw], images)
            exported[fw] = OnnxRunner(path)(images)
    rel = spec.tolerances.onnx
    entries = []
    for fw, backend in (("torch", "onnxruntime-from-torch"), ("tensorflow", "onnxruntime-from-tensorflow")):
        for key in keys:
            entries.append(entry(fw, backend, f"onnx/{key}", outputs[fw][key], exported[fw][key], rel))
    for key in keys:
        entries.append(entry("onnxruntime-from-torch", "onnxruntime-from-tensorflow", f"onnx/{key}",
                             exported["torch"][key], exported["tensorflow"][key], rel))
    return entries


def postprocess_parity(spec, twins: dict[str, Twin], images: np.ndarray, tensors: dict[str, np.ndarray]) -> list[dict]:
    """L5, for a task whose twins post-process their outputs: both twins' post-processed outputs from the same
    canonical weights ``tensors``, compared by the task's own rule (its plug-in's ``compare_postprocessed``:
    for a detector, the same detections per image, paired boxes and scores within tolerance)."""
    compare = plugin(spec.task).compare_postprocessed
    if compare is None:
        raise ValueError(f"task {spec.task!r} has no post-processing step to compare (its plug-in declares no "
                         f"compare_postprocessed)")
    served = {}
    for fw, t in twins.items():
        model = t.task.build_model(spec)
        t.bridge.import_weights(model, tensors)
        served[fw] = t.task.postprocess(t.task.predict(model, images), spec)
    return compare(spec, "torch", served["torch"], "tensorflow", served["tensorflow"])


def selection_parity(name_a: str, name_b: str, what: str, selected: str, dependents: tuple[str, ...],
                     a: dict, b: dict, rel_tol: float) -> list[dict]:
    """Outputs that follow a discrete, data-dependent selection, compared row by row.

    ``a[selected]`` and ``b[selected]`` are [N, P, 4] boxes (a two-stage detector's proposals: top-k,
    then NMS; zero boxes pad unused slots), ``dependents`` the outputs computed on those rows ([N, P, ...]:
    the RoI head's). Both sides must select the same boxes, but not in the same slots: proposals with tied
    scores come out of NMS in either order (graph-mode TF and eager differ), which shifts every later
    slot, so rows are paired by their box (every coordinate within ``rel_tol`` of the largest). Entries:
    ``<what>/<selected> unmatched`` (the larger share of either side's boxes with no partner; must be 0),
    then ``<what>/<key>`` for the selection and each dependent, compared on the paired rows.
    """
    boxes_a, boxes_b = np.asarray(a[selected], np.float64), np.asarray(b[selected], np.float64)
    if boxes_a.shape != boxes_b.shape or boxes_a.ndim != 3:
        return [{"a": name_a, "b": name_b, "what": f"{what}/{selected}", "max_abs": float("inf"), "tol": 0.0,
                 "ok": False, "error": f"shape {boxes_a.shape} vs {boxes_b.shape}; expected [N, P, 4] each"}]
    tol = rel_tol * float(np.abs(boxes_a).max()) if boxes_a.size else 0.0
    rows_a, rows_b, shares = [], [], []
    for image, (pa, pb) in enumerate(zip(boxes_a, boxes_b)):
        used = [np.flatnonzero((p[:, 2:] > p[:, :2]).all(axis=1)) for p in (pa, pb)]   # padding slots are empty
        diff = np.abs(pa[used[0], None] - pb[None, used[1]]).max(axis=-1)               # [Va, Vb]
        if not diff.size:
            shares.append(float(len(used[0]) != len(used[1])))
            continue
        best = diff.argmin(axis=1)
        paired = diff[np.arange(len(best)), best] <= tol
        rows_a += [(image, i) for i in used[0][paired]]
        rows_b += [(image, j) for j in used[1][best[paired]]]
        count = int(paired.sum())
        shares.append(max((len(side) - count) / max(len(side), 1) for side in used))
    worst = max(shares, default=1.0)
    entries = [{"a": name_a, "b": name_b, "what": f"{what}/{selected} unmatched", "max_abs": worst,
                "tol": 0.0, "ok": bool(rows_a) and worst == 0.0}]
    if not rows_a:
        entries[0]["error"] = f"no {selected} row of {name_a} has a partner in {name_b}"
        return entries
    index_a, index_b = tuple(np.array(rows_a).T), tuple(np.array(rows_b).T)
    for key in (selected, *dependents):
        entries.append(entry(name_a, name_b, f"{what}/{key}", np.asarray(a[key])[index_a], np.asarray(b[key])[index_b],
                             rel_tol))
    return entries


def run_parity(task: str, preset: str = "tiny", levels: tuple[str, ...] = LEVELS, seed: int = 0,
               batch: int = 8, progress: Callable[[str], None] | None = None,
               variant: str | None = None) -> list[dict]:
    """All requested levels for ``task`` (or its ``variant``) at ``preset``; a list of result-schema parity entries."""
    unknown = [lv for lv in levels if lv not in LEVELS]
    if unknown:
        raise ValueError(f"unknown parity levels {unknown}; expected a subset of {list(LEVELS)}")
    spec = get_spec(task, preset, variant)
    twins = load_twins(task)
    data = D.load(spec)
    images, targets = data.train.images[:batch], data.train.targets[:batch]
    runs = {
        "forward": lambda: forward_parity(spec, twins, images, seed),
        "gradients": lambda: gradient_parity(spec, twins, images[:spec.tolerances.gradient_images],
                                             targets[:spec.tolerances.gradient_images], seed),
        "training": lambda: training_parity(spec, twins, data.train, seed),
        "onnx": lambda: onnx_parity(spec, twins, images, seed),
    }
    entries = []
    for level in levels:
        if progress:
            progress(level)
        entries.extend(runs[level]())
    return entries


def summarize(entries: list[dict]) -> list[dict]:
    """Per level and pair of backends: the worst entry (largest max_abs / tol)."""
    worst: dict[tuple, dict] = {}
    for e in entries:
        level = e["what"].split("/", 1)[0]
        key = (level, e["a"], e["b"])
        score = e["max_abs"] / e["tol"] if e["tol"] > 0 else float("inf")
        if key not in worst or score > worst[key]["_score"]:
            worst[key] = {**e, "_score": score, "count": 0, "failed": 0}
    for e in entries:
        row = worst[(e["what"].split("/", 1)[0], e["a"], e["b"])]
        row["count"] += 1
        row["failed"] += 0 if e["ok"] else 1
    return [{k: v for k, v in row.items() if k != "_score"} for row in worst.values()]

