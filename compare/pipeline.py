"""One task through the whole harness: train, export, run every backend, measure.

Nothing here knows a particular task: it goes through the twin contract
(``build_model``, ``train``, ``evaluate``, exporters, bridges) and the spec.
Every step that can fail is recorded as failed with its error, and the rest
of the task still runs.

Weights: each framework trains its own model (its quality is reported), and
every backend and export then runs the *same* weights, the PyTorch-trained
ones moved into the TensorFlow twin through the canonical layout, so the
backend parity matrix compares like with like.
"""

from __future__ import annotations

import dataclasses
import json
import traceback
from pathlib import Path

import numpy as np

from shared import data as D
from shared import weights as W
from shared.cpu import int8_setting
from shared.metrics import agreement, evaluate_outputs, primary_metric
from shared.specs import FRAMEWORKS, get_spec, run_name, split_run_name
from shared.weights import write_atomic

from . import backends as B
from . import speed as S
from . import training_speed
from .cache import TaskCache
from .exports import export_all
from .frameworks import load_twins
from .parity import LEVELS as PARITY_LEVELS
from .parity import detection_parity, entry, run_parity, selection_parity
from .progress import Progress, Step
from .quantization import u8s8_headroom
from .size import artifact_bytes
from .studies import StudyContext, studies_for
from .training_speed import framework_step

PROFILES = {
    # profile: (model preset, timing budget, batch sizes)
    "quick": ("tiny", S.QUICK, (1, 32)),
    "standard": ("standard", S.STANDARD, (1, 32)),
}
# Quantization-aware fine-tuning and pruning / clustering fine-tune steps, and the sparsities tried.
# Clustering fine-tunes with Adam at cluster_lr (tensorflow_impl/quantize.py says why).
COMPRESSION = {"quick": {"steps": 8, "sparsities": (0.5,), "clusters": 16, "cluster_lr": 1e-4, "calibration": 64},
               "standard": {"steps": 40, "sparsities": (0.5, 0.8), "clusters": 16, "cluster_lr": 1e-4,
                            "calibration": 256}}
REFERENCE = "torch"  # whose trained weights every backend runs
# Served detections are compared from this score up: well above the post-processing's own score cut
# (0.01), where float noise between backends can move a detection across it.
SERVED_MIN_SCORE = 0.05


# What each step of a run says on the progress line (and the key of its cost in compare.progress).
QUANTIZE_STEP = "quantize: TFLite fp16 / dynamic / int8, QAT, torch pt2e int8, ORT int8"
TRAINING_SPEED_STEP = "training speed: each twin's loop against its framework's bare step"
PARITY_STEP = "parity levels L1-L4 (tiny preset)"
COMPRESSION_STEP = "compression: pruning and clustering"


def _speed_step(backend: str, batches: tuple[int, ...]) -> str:
    return f"{backend}: speed at batch {', '.join(map(str, batches))}"


def planned_steps(task: str, variant: str | None = None, profile: str = "standard") -> list[Step]:
    """Every step a run of ``task`` (or its ``variant``) takes, in order, as the progress line names them.

    A variant run has no quantize or compression step and no quantized backends; a model that cannot be
    exported whole (``spec.export_limit``) runs on the native backends only."""
    name, batches = run_name(task, variant), PROFILES[profile][2]
    limited = getattr(get_spec(task, "tiny", variant), "export_limit", None)
    fp32 = list(B.NATIVE if limited else B.BACKENDS)
    quantized = [] if variant is not None else list(B.QUANTIZED)
    steps = [("data", "data"), *[("train", f"train {fw}") for fw in FRAMEWORKS],
             ("training speed", TRAINING_SPEED_STEP), ("parity", PARITY_STEP), ("export", "export artifacts")]
    if variant is None:
        steps.append(("quantize", QUANTIZE_STEP))
    steps += [("quality", f"{b}: quality and parity batch") for b in fp32]
    steps += [("quality", f"{b}: quality") for b in quantized]
    if variant is None:
        steps.append(("compression", COMPRESSION_STEP))
    steps += [("speed", _speed_step(b, batches)) for b in fp32 + quantized]
    steps += [("study", f"study: {study.name}") for study in studies_for(task, variant)]
    return [Step(name, kind, what) for kind, what in steps]


def run_cache(cache_root: str | Path, name: str, preset: str, spec=None) -> TaskCache:
    """The cache folder of run ``name`` (``shared.specs.run_name``) at ``preset``, keyed by its spec (default:
    the registry's) and the specs of the runs it starts from (``spec.body_from``)."""
    task, variant = split_run_name(name)
    spec = spec or get_spec(task, preset, variant)
    depends_on, source = [], getattr(spec, "body_from", None)
    while source:
        source_task, source_variant = split_run_name(source)
        depends_on.append(get_spec(source_task, preset, source_variant))
        source = getattr(depends_on[-1], "body_from", None)
    return TaskCache(cache_root, name, preset, spec, tuple(depends_on))


_DATA: dict = {}


def task_data(spec):
    """The data of ``spec`` (shared.data.load), generated once for a task's main model and each of its
    variants: they share ``spec.data`` (the standard detection set takes about 15 s to render)."""
    key = (spec.task, spec.data)
    if key not in _DATA:
        _DATA.clear()  # one data set held at a time
        _DATA[key] = D.load(spec)
    return _DATA[key]


def _model_name(spec) -> str | None:
    """The model family a spec builds, for the report's headings (a detector's name; None elsewhere)."""
    model = getattr(spec, "model", None)
    return getattr(model, "detector", None)


def _torch_parts(model, keys):
    import torch

    from pytorch_impl.tensors import to_native, to_numpy

    model = model.eval()

    def run(x):
        with torch.inference_mode():
            return model(x)

    return to_native, run, lambda out: {k: to_numpy(out[k]) for k in keys}


class TaskRun:
    """Collects one task's results in the schema of docs/ARCHITECTURE.md, plus what the report draws.

    With ``variant`` (a model of ``TaskEntry.variants``), the run covers training, parity, exports and
    the fp32 backends; the quantization and compression studies belong to the task's main model.
    """

    def __init__(self, task: str, profile: str, cache_root: Path, threads: int, progress: Progress,
                 variant: str | None = None):
        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r}; expected one of {sorted(PROFILES)}")
        self.task, self.profile, self.threads, self.progress = task, profile, threads, progress
        self.variant, self.name = variant, run_name(task, variant)
        self.preset, self.budget, self.batches = PROFILES[profile]
        self.spec = get_spec(task, self.preset, variant)
        self.cache_root = Path(cache_root)
        self.cache = run_cache(self.cache_root, self.name, self.preset, self.spec)
        self.twins = load_twins(task)
        self._initial = None  # (spec, canonical tensors) of the shared initialisation, made on first use
        self.result = {"status": "ok", "errors": [], "parity": [], "speed": [], "size": [], "quality": {},
                       "backends": [], "training": {}, "exports": [], "preset": self.preset, "task": task,
                       "variant": variant, "model": _model_name(self.spec)}

    # -- bookkeeping -------------------------------------------------------------------------------
    def _evaluate(self, outputs: dict, split, framework: str) -> dict:
        """Task metrics of a backend's raw outputs, post-processed (where the task has that step) by the twin
        of the framework the backend came from: a TF export is scored the way TF would serve it."""
        postprocess = getattr(self.twins[framework].task, "postprocess", None)
        return evaluate_outputs(self.spec, outputs, split, postprocess)

    def _fail(self, what: str, err: BaseException) -> str:
        message = f"{what}: {type(err).__name__}: {err}"
        self.result["errors"].append(message)
        self.result.setdefault("tracebacks", []).append(traceback.format_exc(limit=6))
        return message

    # -- the steps ---------------------------------------------------------------------------------
    def run(self) -> dict:
        twins = self.twins
        self.progress.step(self.name, "data", "data")
        data = task_data(self.spec)
        models = self._train(twins, data)
        self._training_speed(twins, data)
        self._parity_levels()
        if REFERENCE not in models:
            self.result["status"] = "failed"
            return self.result
        reference = self._reference_models(twins, models)
        artifacts = self._export(twins, reference)
        runners = self._runners(reference, artifacts)
        quantized = self._quantize(twins, reference, artifacts, data) if self.variant is None else {}
        self._backend_matrix(runners, data)
        self._quantized_quality(quantized, runners, data)
        if self.variant is None:
            self._compression(twins, reference, data)
        self._speed({**runners, **quantized}, data, reference)
        self._quantization_summary()
        self._studies(twins, data, models)
        if self.result["errors"]:
            self.result["status"] = "failed" if not runners else "ok"
        return self.result

    def exports(self) -> dict[str, Path]:
        """Only the first steps: train (or take from the cache) both twins, then export the reference model's
        artifacts (``twinvision export``); {artifact: path}. Failures are in ``self.result["errors"]``."""
        self.progress.step(self.name, "data", "data")
        models = self._train(self.twins, task_data(self.spec))
        if REFERENCE not in models:
            return {}
        return self._export(self.twins, self._reference_models(self.twins, models))

    def initial_model(self, framework: str, spec=None):
        """A fresh ``framework`` model holding the reference framework's seeded initialisation (moved through
        the canonical layout). Both frameworks start training from the same weights, so the gap between their
        trained models measures the frameworks, not two random draws (with torch as the reference, the
        torch model is exactly what its own ``train`` would have built). With ``spec.body_from``, the body
        (``spec.body_keys``) comes from that run's trained reference model instead."""
        import torch

        spec = spec or self.spec
        if self._initial is None or self._initial[0] is not spec:
            torch.manual_seed(spec.train.seed)
            reference = self.twins[REFERENCE]
            tensors = reference.bridge.export_weights(reference.task.build_model(spec))
            if getattr(spec, "body_from", None):
                tensors.update(self._trained_body(spec, tensors))
            self._initial = (spec, tensors)
        twin = self.twins[framework]
        return twin.bridge.import_weights(twin.task.build_model(spec), self._initial[1])

    def _trained_body(self, spec, initial: dict) -> dict:
        """The body tensors (``spec.body_keys``) of run ``spec.body_from``'s trained reference model, read from
        its cache folder (the report runs a task's main model before its variants)."""
        path = run_cache(self.cache_root, spec.body_from, self.preset).path(f"trained-{REFERENCE}.safetensors")
        if not path.exists():
            raise RuntimeError(f"{self.name} starts from the trained body of {spec.body_from!r}, which is not in the "
                               f"cache ({path}): run {spec.body_from!r} first (the report runs it before this)")
        trained = W.load_file(path)
        body = {k: v for k, v in trained.items() if k.startswith(spec.body_keys)}
        wrong = {k: (v.shape, initial.get(k, np.empty(0)).shape) for k, v in body.items()
                 if k not in initial or v.shape != initial[k].shape}
        if not body or wrong:
            raise ValueError(f"{path}: expected body tensors {spec.body_keys} matching {self.name}'s; received "
                             f"{len(body)} body tensors, mismatched (trained, expected): {wrong}")
        return body

    def _train(self, twins, data) -> dict:
        models = {}
        for fw, twin in twins.items():
            self.progress.step(self.name, "train", f"train {fw}")
            try:
                weights = self.cache.path(f"trained-{fw}.safetensors")
                history_path = self.cache.path(f"trained-{fw}.history.json")
                cached = weights.exists() and history_path.exists()
                if cached:
                    model = twin.bridge.load_weights(twin.task.build_model(self.spec), weights)
                    history = json.loads(history_path.read_text())
                else:
                    model, history = twin.task.train(self.spec, data, model=self.initial_model(fw),
                                                     progress=False)
                    twin.bridge.save_weights(model, weights, {"task": self.task, "preset": self.preset})
                    write_atomic(history_path, json.dumps(history))
                seconds = history[-1]["seconds"]
                images = len(data.train) * len(history)
                metrics = twin.task.evaluate(model, data.test, self.spec)
                self.result["quality"][fw] = {k: v for k, v in metrics.items() if not isinstance(v, list)}
                # The median epoch's rate too: the whole run's includes the first epoch's tracing and any
                # spell in which a neighbour took a core (on shared machines, epochs 2-3x slower come and go).
                epoch_seconds = np.diff([0.0] + [row["seconds"] for row in history])
                self.result["training"][fw] = {"cached": cached, "epochs": len(history), "seconds": seconds,
                                               "images_per_s": images / seconds,
                                               "median_epoch_images_per_s": len(data.train) / float(
                                                   np.median(epoch_seconds)), "history": history,
                                               "per_class_recall": metrics.get("per_class_recall")}
                self.progress.printer(f"    {fw}: {'cached' if cached else 'trained'}; test metrics "
                                      + ", ".join(f"{k} {v:.4f}" for k, v in self.result["quality"][fw].items()
                                                  if v is not None))
                models[fw] = model
            except Exception as err:  # noqa: BLE001 - a failing framework is recorded, the report goes on
                self._fail(f"train {fw}", err)
        return models

    def _training_speed(self, twins, data) -> None:
        """Each twin's training loop against its framework's bare reference step (compare.training_speed)."""
        self.progress.step(self.name, "training speed", TRAINING_SPEED_STEP)
        for fw, twin in twins.items():
            try:
                probe = training_speed.measure(twin, self.spec, data.train, self.initial_model,
                                               training_speed.PROBES[self.profile])
                self.result["training"].setdefault(fw, {})["probe"] = probe
                self.progress.printer(f"    {fw}: twin loop {probe['twin_images_per_s']:.0f} images/s, bare "
                                      f"{framework_step(fw)} {probe['reference_images_per_s']:.0f} "
                                      f"(ratio {probe['ratio']:.2f})")
            except Exception as err:  # noqa: BLE001
                self._fail(f"training speed {fw}", err)

    def _studies(self, twins, data, models) -> None:
        """The task's own studies (compare.studies), each recorded as failed on its own if it breaks."""
        context = StudyContext(self.spec, data, twins, models, self.cache, self.progress.printer,
                               self.initial_model)
        for study in studies_for(self.task, self.variant):
            self.progress.step(self.name, "study", f"study: {study.name}")
            try:
                self.result.setdefault("studies", []).append({**study.run(context), "name": study.name,
                                                              "seed_answers": list(study.seed_answers)})
            except Exception as err:  # noqa: BLE001
                self._fail(f"study {study.name}", err)

    def _parity_levels(self) -> None:
        self.progress.step(self.name, "parity", PARITY_STEP)
        for level in PARITY_LEVELS:  # one at a time: a level that breaks does not take the others with it
            try:
                self.result["parity"].extend(run_parity(self.task, "tiny", (level,), variant=self.variant))
            except Exception as err:  # noqa: BLE001
                self._fail(f"parity level {level}", err)

    def _reference_models(self, twins, models) -> dict:
        """Both frameworks' models holding the reference weights."""
        tensors = twins[REFERENCE].bridge.export_weights(models[REFERENCE])
        reference = {}
        for fw, twin in twins.items():
            try:
                reference[fw] = twin.bridge.import_weights(twin.task.build_model(self.spec), tensors)
            except Exception as err:  # noqa: BLE001
                self._fail(f"load reference weights into {fw}", err)
        return reference

    def _export(self, twins, reference) -> dict[str, Path]:
        self.progress.step(self.name, "export", "export artifacts")
        exported = export_all(twins, reference, self.spec, self.cache,
                              skip_reason=getattr(self.spec, "export_limit", None))
        self.result["exports"].extend(exported.rows)
        self.result["size"].extend(exported.sizes)
        self.result["errors"].extend(exported.errors)
        self.result.setdefault("tracebacks", []).extend(exported.tracebacks)
        return exported.paths

    def _runners(self, reference, artifacts) -> dict[str, B.Runner]:
        runners, limit = {}, getattr(self.spec, "export_limit", None)
        for name in B.BACKENDS:
            if limit and name not in B.NATIVE:
                self.result["backends"].append({"name": name, "source": B.SOURCE[name], "status": "skipped",
                                                "reason": limit})
                continue
            try:
                runners[name] = B.make_runner(name, reference, artifacts, self.spec, self.threads)
                self.result["backends"].append({"name": name, "source": B.SOURCE[name], "status": "ok"})
            except Exception as err:  # noqa: BLE001
                self.result["backends"].append({"name": name, "source": B.SOURCE[name], "status": "failed",
                                                "error": self._fail(f"backend {name}", err)})
        return runners

    # -- quantization and compression (seed answers 11 and 28) ---------------------------------------
    def _quantize(self, twins, reference, artifacts, data) -> dict[str, B.Runner]:
        """Every quantized variant as a runner; artifacts cached, failures recorded per variant."""
        self.progress.step(self.name, "quantize", QUANTIZE_STEP)
        from pytorch_impl import quantize as PQ
        from pytorch_impl.export import export_onnx
        from tensorflow_impl import quantize as TQ

        from .quantization import onnx_static_int8

        cfg, spec, keys = COMPRESSION[self.profile], self.spec, tuple(self.spec.output_keys)
        calibration = data.train.images[:cfg["calibration"]]
        # The weight range for this CPU's integer kernels (7-bit without VNNI; shared.cpu says why). TFLite's
        # int8 kernels (XNNPACK) widen to 16 bits before multiplying and need no such setting.
        int8 = self.int8 = int8_setting()
        self.result["int8"] = dataclasses.asdict(int8)
        tensors = twins["torch"].bridge.export_weights(reference["torch"])
        lr = spec.train.lr * 0.02  # fine-tuning a trained model: a small step
        tflite = lambda name, make: B.tflite_runner(name, self._artifact(name, make), self.threads, keys)  # noqa
        onnx = lambda name, make: B.onnx_runner(name, self._artifact(name, make), self.threads)  # noqa
        plan = {
            "tflite-fp16": lambda: tflite("tflite-fp16", ("model-fp16.tflite", lambda p: TQ.to_tflite(
                artifacts["saved_model"], p, "fp16"))),
            "tflite-dynamic": lambda: tflite("tflite-dynamic", ("model-dynamic.tflite", lambda p: TQ.to_tflite(
                artifacts["saved_model"], p, "dynamic"))),
            "tflite-int8": lambda: tflite("tflite-int8", ("model-int8.tflite", lambda p: TQ.to_tflite(
                artifacts["saved_model"], p, "int8", calibration, spec))),
            "tflite-int8-qat": lambda: tflite("tflite-int8-qat", ("model-int8-qat.tflite", lambda p: TQ.quantize_qat(
                tensors, spec, data.train, cfg["steps"], lr, p))),
            "torch-int8": lambda: self._torch_int8("torch-int8", PQ.quantize_static(reference["torch"], spec,
                                                                                    calibration, int8), PQ),
            "torch-int8-qat": lambda: self._torch_int8("torch-int8-qat", PQ.quantize_qat(
                reference["torch"], spec, data.train, cfg["steps"], lr, int8), PQ),
            "torch-int8-dynamic": lambda: B.module_runner("torch-int8-dynamic", PQ.quantize_dynamic(
                reference["torch"]), keys),
            "onnxruntime-torch-int8": lambda: onnx("onnxruntime-torch-int8", (
                f"model-torch-pt2e-int8-{int8.name}.onnx", lambda p: export_onnx(self._pt2e_int8_model(), spec, p))),
            "onnxruntime-int8": lambda: onnx("onnxruntime-int8", (
                f"model-torch-int8-{int8.name}.onnx", lambda p: onnx_static_int8(
                    artifacts["onnx-from-torch"], p, calibration, spec, int8=int8))),
            "onnxruntime-int8-from-tensorflow": lambda: onnx("onnxruntime-int8-from-tensorflow", (
                f"model-tensorflow-int8-{int8.name}.onnx", lambda p: onnx_static_int8(
                    artifacts["onnx-from-tensorflow"], p, calibration, spec, int8=int8))),
        }
        runners = {}
        for name, make in plan.items():
            framework, source = B.QUANTIZED[name]
            try:
                runners[name] = make()
                self.result["backends"].append({"name": name, "source": framework, "status": "ok",
                                                "quantized": True, "fp32_backend": source})
            except TQ.UnsupportedOpError as err:
                # A declared limit of the toolkit (tfmot rebuilds the classifier only), not a breakage.
                self.result["backends"].append({"name": name, "source": framework, "status": "skipped",
                                                "quantized": True, "fp32_backend": source,
                                                "reason": f"UnsupportedOpError: {err}"})
            except Exception as err:  # noqa: BLE001 - one variant failing leaves the others
                self.result["backends"].append({"name": name, "source": framework, "status": "failed",
                                                "quantized": True, "fp32_backend": source,
                                                "error": self._fail(f"quantize {name}", err)})
        return runners

    def _artifact(self, name: str, filename_make) -> Path:
        filename, make = filename_make
        path, cached = self.cache.artifact(filename, make)
        row = {"artifact": name, "bytes": artifact_bytes(path), "framework": B.QUANTIZED[name][0], "quantized": True}
        if path.suffix == ".onnx":  # can this file saturate a CPU without VNNI? (measured on its weights)
            row["u8s8"] = u8s8_headroom(path)
        self.result["size"].append(row)
        return path

    def _pt2e_int8_model(self):
        model = getattr(self, "_pt2e_int8", None)
        if model is None:
            raise RuntimeError("no torch pt2e int8 model to export: the torch-int8 variant failed (see its error)")
        return model

    def _torch_int8(self, name: str, module, PQ) -> B.Runner:
        if name == "torch-int8":
            self._pt2e_int8 = module  # exported to ONNX (QDQ) as onnxruntime-torch-int8
        path = PQ.save_int8(module, self.spec, self.cache.path(f"{name}.safetensors"))
        self.result["size"].append({"artifact": name, "bytes": artifact_bytes(path), "framework": "torch",
                                    "quantized": True, "note": "int8 tensors of the pt2e model (safetensors)"})
        return B.pt2e_int8_runner(name, module, tuple(self.spec.output_keys))

    def _quantized_quality(self, quantized, runners, data) -> None:
        """Task metrics of each variant and, where the task has one decision per input (a classifier's top-1),
        its agreement with the fp32 reference (L6)."""
        reference = runners.get(REFERENCE)
        ref_outputs = reference.predict(data.test.images) if reference else None
        for name, runner in list(quantized.items()):
            self.progress.step(self.name, "quality", f"{name}: quality")
            try:
                full = runner.predict(data.test.images, batch=32)
                metrics = self._evaluate(full, data.test, B.QUANTIZED[name][0])
                scalars = {k: v for k, v in metrics.items() if not isinstance(v, list)}
                agreed = agreement(full, ref_outputs, self.spec) if ref_outputs is not None else None
                if agreed is not None:
                    scalars["top1_agreement"] = agreed
                self._backend_row(name)["quality"] = scalars
                self.result["quality"][name] = scalars
            except Exception as err:  # noqa: BLE001
                self._fail(f"backend {name} run", err)
                self._mark_failed(name, err)
                del quantized[name]

    def _compression(self, twins, reference, data) -> None:
        """Pruning (both frameworks) and weight clustering (tfmot): accuracy against sparsity and compressed size."""
        self.progress.step(self.name, "compression", COMPRESSION_STEP)
        import gzip

        from pytorch_impl import quantize as PQ
        from shared.weights import load_file
        from tensorflow_impl import quantize as TQ

        from .quantization import kernel_sparsity, tflite_kernel_sparsity

        cfg, spec = COMPRESSION[self.profile], self.spec
        tensors = twins["torch"].bridge.export_weights(reference["torch"])
        lr = spec.train.lr * 0.02
        rows = self.result.setdefault("compression", [])

        def record(variant, framework, setting, path, outputs):
            metrics = self._evaluate(outputs, data.test, framework)
            measured = (tflite_kernel_sparsity(path) if str(path).endswith(".tflite")
                        else kernel_sparsity(load_file(path)))
            rows.append({"variant": variant, "framework": framework, **setting, "measured_sparsity": measured,
                         "metric": primary_metric(spec.task), "quality": metrics[primary_metric(spec.task)],
                         "bytes": artifact_bytes(path),
                         "gzip_bytes": len(gzip.compress(Path(path).read_bytes()))})

        jobs = []
        for sparsity in cfg["sparsities"]:
            jobs.append((f"tflite-pruned-{int(sparsity * 100)}", "tensorflow", {"sparsity": sparsity},
                         lambda s=sparsity: self._tflite_job(f"model-pruned-{int(s * 100)}.tflite", lambda p: TQ.prune(
                             tensors, spec, data.train, s, cfg["steps"], lr, p), data)))
            jobs.append((f"torch-pruned-{int(sparsity * 100)}", "torch", {"sparsity": sparsity},
                         lambda s=sparsity: self._torch_pruned(PQ.prune(reference["torch"], spec, data.train, s,
                                                                        cfg["steps"], lr), s, data)))
        jobs.append((f"tflite-clustered-{cfg['clusters']}", "tensorflow", {"clusters": cfg["clusters"]},
                     lambda: self._tflite_job(f"model-clustered-{cfg['clusters']}.tflite", lambda p: TQ.cluster(
                         tensors, spec, data.train, cfg["clusters"], cfg["steps"], cfg["cluster_lr"], p), data)))
        baselines = [("tflite-fp32", "tensorflow", {"sparsity": 0.0}, lambda: self._tflite_job(
            "model-fp32.tflite", None, data)), ("torch-fp32", "torch", {"sparsity": 0.0}, lambda: self._torch_pruned(
                reference["torch"], 0.0, data))]
        for variant, framework, setting, job in baselines + jobs:
            try:
                path, outputs = job()
                record(variant, framework, setting, path, outputs)
            except Exception as err:  # noqa: BLE001
                self._fail(f"compression {variant}", err)

    def _tflite_job(self, filename, make, data):
        path = self.cache.path(filename) if make is None else self.cache.artifact(filename, make)[0]
        runner = B.tflite_runner(filename, path, self.threads, tuple(self.spec.output_keys))
        return path, runner.predict(data.test.images, batch=32)

    def _torch_pruned(self, model, sparsity, data):
        from pytorch_impl import bridge

        path = bridge.save_weights(model, self.cache.path(f"torch-pruned-{int(sparsity * 100)}.safetensors"))
        runner = B.Runner("torch-pruned", *_torch_parts(model, tuple(self.spec.output_keys)))
        return path, runner.predict(data.test.images, batch=32)

    def _quantization_summary(self) -> None:
        """Per quantized variant: quality drop, agreement, size and speed against its fp32 source (L6)."""
        metric = primary_metric(self.spec.task)
        sizes = {r["artifact"]: r["bytes"] for r in self.result["size"]}
        fp32_bytes = {"tflite-fp32": sizes.get("tflite-fp32"), "onnxruntime-from-torch": sizes.get("onnx-from-torch"),
                      "onnxruntime-from-tensorflow": sizes.get("onnx-from-tensorflow"),
                      "torch-compile": sizes.get("safetensors"), "torch": sizes.get("safetensors")}
        speed = {(r["backend"], r["batch"]): r["p50_ms"] for r in self.result["speed"]}
        rows = []
        for b in self.result["backends"]:
            if not b.get("quantized") or b["status"] != "ok" or "quality" not in b:
                continue
            source = b["fp32_backend"]
            fp32_quality = next((r.get("quality", {}) for r in self.result["backends"] if r["name"] == source), {})
            row = {"variant": b["name"], "framework": b["source"], "fp32_backend": source,
                   "metric": metric, "quality": b["quality"].get(metric), "fp32_quality": fp32_quality.get(metric),
                   "top1_agreement": b["quality"].get("top1_agreement"), "bytes": sizes.get(b["name"]),
                   "fp32_bytes": fp32_bytes.get(source)}
            row["size_ratio"] = row["bytes"] / row["fp32_bytes"] if row["bytes"] and row["fp32_bytes"] else None
            for batch in self.batches:
                q, f = speed.get((b["name"], batch)), speed.get((source, batch))
                row[f"p50_ms_b{batch}"] = q
                row[f"speedup_b{batch}"] = f / q if q and f else None
            rows.append(row)
        self.result["quantization"] = rows

    def _backend_matrix(self, runners, data) -> None:
        """Quality of every backend on the test split, and every pair's max diff on one batch."""
        outputs = {}
        for name, runner in list(runners.items()):
            self.progress.step(self.name, "quality", f"{name}: quality and parity batch")
            try:
                full = runner.predict(data.test.images, batch=32)
                metrics = self._evaluate(full, data.test, B.SOURCE[name])
                scalars = {k: v for k, v in metrics.items() if not isinstance(v, list)}
                self._backend_row(name)["quality"] = scalars
                # quality["torch"] / ["tensorflow"] hold each framework's *own* trained model; the backends
                # of the same name run the reference weights, so they are listed under "backends" only.
                if name not in FRAMEWORKS:
                    self.result["quality"][name] = scalars
                outputs[name] = {k: v[:32] for k, v in full.items()}
            except Exception as err:  # noqa: BLE001
                self._fail(f"backend {name} run", err)
                self._mark_failed(name, err)
                del runners[name]
        names, tol = list(outputs), self.spec.tolerances.onnx
        selected = getattr(self.spec, "selected_outputs", {})  # compared by paired rows (selection_parity)
        by_slot = [k for k in self.spec.output_keys if k not in selected and not any(k in d for d in selected.values())]
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                for key in by_slot:
                    self.result["parity"].append(entry(a, b, f"backends/{key}", outputs[a][key], outputs[b][key], tol))
                for key, dependents in selected.items():
                    self.result["parity"].extend(selection_parity(a, b, "backends", key, dependents, outputs[a],
                                                                  outputs[b], tol))
        self._served_detections(outputs)

    def _served_detections(self, outputs: dict) -> None:
        """For tasks with a post-processing step (detectors): each backend's raw outputs post-processed by the
        twin of its source framework, as that framework would serve them, against the reference backend's
        detections (L5 on the trained model: NMS runs after the exported graph, in the framework)."""
        if REFERENCE not in outputs or not all(hasattr(t.task, "postprocess") for t in self.twins.values()):
            return
        served = {name: self.twins[B.SOURCE[name]].task.postprocess(out, self.spec) for name, out in outputs.items()}
        for name in outputs:
            if name != REFERENCE:
                self.result["parity"].extend(detection_parity(self.spec, REFERENCE, served[REFERENCE], name,
                                                              served[name], "backends/served",
                                                              min_score=SERVED_MIN_SCORE))

    def _backend_row(self, name: str) -> dict:
        return next(row for row in self.result["backends"] if row["name"] == name)

    def _mark_failed(self, name: str, err: BaseException) -> None:
        self._backend_row(name).update(status="failed", error=f"{type(err).__name__}: {err}")

    def _speed(self, runners, data, reference) -> None:
        flops = None
        try:
            flops = S.model_flops(reference["torch"], self.spec)
        except Exception as err:  # noqa: BLE001
            self._fail("FLOP count", err)
        self.result["flops_per_image"] = flops
        for name, runner in list(runners.items()):
            self.progress.step(self.name, "speed", _speed_step(name, self.batches))
            for batch in self.batches:
                try:
                    images = np.ascontiguousarray(data.test.images[:batch])
                    if len(images) < batch:
                        images = np.resize(images, (batch, *images.shape[1:]))
                    timing = S.time_call(runner.run, runner.to_input(images), self.budget)
                    row = {"backend": name, "batch": batch, **timing}
                    if flops:
                        row["gflops"] = flops * batch / (timing["p50_ms"] / 1e3) / 1e9
                    self.result["speed"].append(row)
                except Exception as err:  # noqa: BLE001
                    self._fail(f"speed {name} batch {batch}", err)
                    self._mark_failed(name, err)
