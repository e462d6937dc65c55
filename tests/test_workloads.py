"""The reference workloads' code path (compare.workloads) on a small input: ResNet-18 at 32 px through a few
fp32 backends and every int8 one. The standard report runs the same code at 224 px on every backend."""

from __future__ import annotations

import pytest

from compare import speed
from compare.progress import Progress
from compare.workloads import INT8_BACKENDS, planned_steps, run_workload

pytestmark = pytest.mark.export

BACKENDS = ("torch", "tensorflow", "onnxruntime-from-torch", "tflite-fp32", *INT8_BACKENDS)


def test_a_resnet_workload_is_checked_then_timed_on_every_backend(tmp_path):
    steps = planned_steps("resnet18", BACKENDS, (1, 2))
    progress = Progress(steps, printer=lambda s: None, bar=False)
    result = run_workload("resnet18", tmp_path, 1, speed.QUICK, progress, image_size=32, batches=(1, 2),
                          backends=BACKENDS)
    assert result["errors"] == [], result["errors"]
    assert len(progress.steps) == len(steps)  # every step it took was planned
    assert {b["name"] for b in result["backends"] if b["status"] == "ok"} == set(BACKENDS)
    assert {(r["backend"], r["batch"]) for r in result["speed"]} == {(b, n) for b in BACKENDS for n in (1, 2)}
    assert all(r["p50_ms"] > 0 and r["gflops"] > 0 for r in result["speed"])
    # ResNet-18's FLOPs scale with the input area: 1.8 GMAC at 224 px is ~3.6 GFLOP, so ~0.07 GFLOP at 32 px.
    assert 0.05e9 < result["flops_per_image"] < 0.1e9 and result["params"] > 11e6
    fp32 = [e for e in result["parity"]]
    assert {e["b"] for e in fp32} == set(BACKENDS) - set(INT8_BACKENDS) and all(e["ok"] for e in fp32), fp32
    assert {r["artifact"] for r in result["size"]} >= {"onnx-from-torch", "onnx-from-tensorflow", "tflite-fp32"}
    assert result["int8"]["name"] in ("vnni", "no-vnni")


def test_unknown_workload_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="unknown workload 'vgg16'.*resnet18"):
        run_workload("vgg16", tmp_path, 1, speed.QUICK, Progress([], printer=lambda s: None, bar=False))
