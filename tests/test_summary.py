"""The report's answers-first summary (compare/summary.py): who wins what, by how much, under the tie rule."""

from __future__ import annotations

from compare import summary


def _speed(rows, cv=0.01):
    return [{"backend": b, "batch": n, "p50_ms": ms, "cv": cv} for b, n, ms in rows]


def _results(speed, training=None, quality=None, size=None):
    task = {"task": "classification", "speed": speed, "size": size or [], "training": training or {},
            "quality": quality or {}}
    return {"run": {"host": {"cpu": "Test CPU", "isa": "AVX2", "threads": 2}}, "tasks": {"classification": task}}


def test_each_framework_is_its_best_float32_path_and_int8_is_named_not_counted():
    speed = _speed([("torch", 1, 2.0), ("onnxruntime-from-torch", 1, 1.0), ("tensorflow", 1, 3.0),
                    ("tflite-fp32", 1, 1.5), ("torch-int8", 1, 0.5)])
    rows = summary.summarize(_results(speed))["rows"]
    (row,) = [r for r in rows if r["aspect"] == "inference, batch 1"]
    assert row["torch"]["path"] == "onnxruntime-from-torch" and row["tensorflow"]["path"] == "tflite-fp32"
    assert row["winner"] == "torch" and row["ratio"] == 1.5
    assert row["best_path"] == {"path": "torch-int8", "framework": "torch", "value": 0.5, "unit": "ms"}
    assert row["link"] == "#task-classification-speed"


def test_a_gap_inside_the_noise_or_the_margin_is_a_tie():
    noisy = _speed([("torch", 1, 1.0), ("tensorflow", 1, 1.4)], cv=0.3)  # 1.4x < 1 + 2 x 0.3
    assert summary.summarize(_results(noisy))["rows"][0]["winner"] == "tie"
    close = _speed([("torch", 1, 1.0), ("tensorflow", 1, 1.05)])  # within the 10% margin
    assert summary.summarize(_results(close))["rows"][0]["winner"] == "tie"


def test_training_quality_and_size_rows():
    training = {"torch": {"images_per_s": 800.0, "seconds": 75.0}, "tensorflow": {"images_per_s": 500.0,
                                                                                 "seconds": 118.0}}
    quality = {"torch": {"accuracy": 0.914}, "tensorflow": {"accuracy": 0.909}}
    size = [{"artifact": "onnx-from-torch", "bytes": 1_245_268, "framework": "torch"},
            {"artifact": "tflite-fp32", "bytes": 1_237_452, "framework": "tensorflow"},
            {"artifact": "tflite-int8", "bytes": 339_576, "framework": "tensorflow"}]
    answers = summary.summarize(_results(_speed([("torch", 1, 1.0)]), training, quality, size))
    rows = {r["aspect"]: r for r in answers["rows"]}
    assert rows["training speed"]["winner"] == "torch" and round(rows["training speed"]["ratio"], 2) == 1.6
    assert rows["quality"]["winner"] == "tie"  # 0.005 is within ACCURACY_KEPT
    assert rows["deployment size"]["winner"] == "tie" and rows["deployment size"]["best_path"]["path"] == "tflite-int8"
    assert "inference, batch 1" not in rows  # one framework timed: nothing to compare
    lines = summary.headline(answers)
    assert "Training speed: PyTorch ahead (PyTorch ahead on 1 of 1 task model)." in lines
    assert any(line.startswith("Quality: a tie on the task model") for line in lines), lines
