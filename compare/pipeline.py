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

import json
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from shared import data as D
from shared.metrics import evaluate_outputs
from shared.specs import FRAMEWORKS, get_spec
from shared.weights import write_atomic

from . import backends as B
from . import speed as S
from .cache import TaskCache
from .frameworks import load_twins
from .parity import entry, run_parity
from .size import artifact_bytes

PROFILES = {
    # profile: (model preset, timing budget, batch sizes)
    "quick": ("tiny", S.QUICK, (1, 32)),
    "standard": ("standard", S.STANDARD, (1, 32)),
}
REFERENCE = "torch"  # whose trained weights every backend runs


@dataclass
class Progress:
    """Prints what runs now, how long the run has taken and an estimate of what is left."""

    total_steps: int
    done: int = 0
    started: float = field(default_factory=time.perf_counter)
    printer: Callable[[str], None] = print

    def step(self, task: str, what: str) -> None:
        elapsed = time.perf_counter() - self.started
        left = elapsed / self.done * (self.total_steps - self.done) if self.done else float("nan")
        eta = f", ~{_clock(left)} left" if self.done else ""
        self.printer(f"[{task} {self.done + 1}/{self.total_steps}] {what} (elapsed {_clock(elapsed)}{eta})")
        self.done += 1


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


def steps_per_task() -> int:
    """data, parity levels, export; training per framework; quality and speed per backend."""
    return 3 + len(FRAMEWORKS) + len(B.BACKENDS) * 2


class TaskRun:
    """Collects one task's results in the schema of ARCHITECTURE.md, plus what the report draws."""

    def __init__(self, task: str, profile: str, cache_root: Path, threads: int, progress: Progress):
        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r}; expected one of {sorted(PROFILES)}")
        self.task, self.profile, self.threads, self.progress = task, profile, threads, progress
        self.preset, self.budget, self.batches = PROFILES[profile]
        self.spec = get_spec(task, self.preset)
        self.cache = TaskCache(cache_root, task, self.preset, self.spec)
        self.result = {"status": "ok", "errors": [], "parity": [], "speed": [], "size": [], "quality": {},
                       "backends": [], "training": {}, "exports": [], "preset": self.preset}

    # -- bookkeeping -------------------------------------------------------------------------------
    def _fail(self, what: str, err: BaseException) -> str:
        message = f"{what}: {type(err).__name__}: {err}"
        self.result["errors"].append(message)
        self.result.setdefault("tracebacks", []).append(traceback.format_exc(limit=6))
        return message

    # -- the steps ---------------------------------------------------------------------------------
    def run(self) -> dict:
        twins = load_twins(self.task)
        self.progress.step(self.task, "data")
        data = D.load(self.spec)
        models = self._train(twins, data)
        self._parity_levels()
        if REFERENCE not in models:
            self.result["status"] = "failed"
            return self.result
        reference = self._reference_models(twins, models)
        artifacts = self._export(twins, reference)
        runners = self._runners(reference, artifacts)
        self._backend_matrix(runners, data)
        self._speed(runners, data, reference)
        if self.result["errors"]:
            self.result["status"] = "failed" if not runners else "ok"
        return self.result

    def _train(self, twins, data) -> dict:
        models = {}
        for fw, twin in twins.items():
            self.progress.step(self.task, f"train {fw}")
            try:
                weights = self.cache.path(f"trained-{fw}.safetensors")
                history_path = self.cache.path(f"trained-{fw}.history.json")
                cached = weights.exists() and history_path.exists()
                if cached:
                    model = twin.bridge.load_weights(twin.task.build_model(self.spec), weights)
                    history = json.loads(history_path.read_text())
                else:
                    model, history = twin.task.train(self.spec, data, progress=False)
                    twin.bridge.save_weights(model, weights, {"task": self.task, "preset": self.preset})
                    write_atomic(history_path, json.dumps(history))
                seconds = history[-1]["seconds"]
                images = len(data.train) * len(history)
                metrics = twin.task.evaluate(model, data.test, self.spec)
                self.result["quality"][fw] = {k: v for k, v in metrics.items() if not isinstance(v, list)}
                self.result["training"][fw] = {"cached": cached, "epochs": len(history), "seconds": seconds,
                                               "images_per_s": images / seconds, "history": history,
                                               "per_class_recall": metrics.get("per_class_recall")}
                self.progress.printer(f"    {fw}: {'cached' if cached else 'trained'}; test metrics "
                                      + ", ".join(f"{k} {v:.4f}" for k, v in self.result["quality"][fw].items()))
                models[fw] = model
            except Exception as err:  # noqa: BLE001 - a failing framework is recorded, the report goes on
                self._fail(f"train {fw}", err)
        return models

    def _parity_levels(self) -> None:
        self.progress.step(self.task, "parity levels L1-L4 (tiny preset)")
        try:
            self.result["parity"].extend(run_parity(self.task, "tiny"))
        except Exception as err:  # noqa: BLE001
            self._fail("parity levels", err)

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
        self.progress.step(self.task, "export artifacts")
        spec, artifacts = self.spec, {}
        plan = [
            ("safetensors", "torch", "model.safetensors",
             lambda p: twins["torch"].bridge.save_weights(reference["torch"], p)),
            ("pt2", "torch", "model.pt2", lambda p: twins["torch"].export.export_program(reference["torch"], spec, p)),
            ("onnx-from-torch", "torch", "model-torch.onnx",
             lambda p: twins["torch"].export.export_onnx(reference["torch"], spec, p)),
            ("onnx-from-tensorflow", "tensorflow", "model-tensorflow.onnx",
             lambda p: twins["tensorflow"].export.export_onnx(reference["tensorflow"], spec, p)),
            ("saved_model", "tensorflow", "saved_model",
             lambda p: twins["tensorflow"].export.export_program(reference["tensorflow"], spec, p)),
            ("keras", "tensorflow", "model.keras",
             lambda p: twins["tensorflow"].export.save_keras(reference["tensorflow"], p)),
            ("tflite-fp32", "tensorflow", "model-fp32.tflite",
             lambda p: twins["tensorflow"].export.export_tflite(artifacts["saved_model"], p)),
        ]
        for name, framework, filename, make in plan:
            started = time.perf_counter()
            try:
                if framework not in reference:
                    raise RuntimeError(f"no {framework} model to export")
                path, cached = self.cache.artifact(filename, make)
                artifacts[name] = path
                self.result["size"].append({"artifact": name, "bytes": artifact_bytes(path), "framework": framework})
                self.result["exports"].append({"artifact": name, "framework": framework, "status": "ok",
                                               "cached": cached, "seconds": time.perf_counter() - started})
            except Exception as err:  # noqa: BLE001
                message = self._fail(f"export {name}", err)
                self.result["exports"].append({"artifact": name, "framework": framework, "status": "failed",
                                               "error": message})
        return artifacts

    def _runners(self, reference, artifacts) -> dict[str, B.Runner]:
        runners = {}
        for name in B.BACKENDS:
            try:
                runners[name] = B.make_runner(name, reference, artifacts, self.spec, self.threads)
                self.result["backends"].append({"name": name, "source": B.SOURCE[name], "status": "ok"})
            except Exception as err:  # noqa: BLE001
                self.result["backends"].append({"name": name, "source": B.SOURCE[name], "status": "failed",
                                                "error": self._fail(f"backend {name}", err)})
        return runners

    def _backend_matrix(self, runners, data) -> None:
        """Quality of every backend on the test split, and every pair's max diff on one batch."""
        outputs = {}
        for name, runner in list(runners.items()):
            self.progress.step(self.task, f"{name}: quality and parity batch")
            try:
                full = runner.predict(data.test.images, batch=32)
                metrics = evaluate_outputs(self.spec, full, data.test)
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
        names = list(outputs)
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                for key in self.spec.output_keys:
                    self.result["parity"].append(entry(a, b, f"backends/{key}", outputs[a][key], outputs[b][key],
                                                       self.spec.tolerances.onnx))

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
            self.progress.step(self.task, f"{name}: speed at batch {', '.join(map(str, self.batches))}")
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
