"""The `twinvision` command: tasks, parity --json, train, and its errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from compare import check, cli


def test_tasks_lists_every_task(capsys):
    assert cli.main(["tasks"]) == 0
    out = capsys.readouterr().out
    assert "classification" in out and "ready" in out and "planned" in out and "tracking" in out


@pytest.mark.parametrize("argv,message", [
    (["parity", "--task", "nope"], "unknown task 'nope'; expected one of"),
    (["train", "--task", "classification", "--framework", "jax"], "unknown framework 'jax'; expected one of"),
    (["parity", "--task", "ocr"], "task 'ocr' is planned"),
    (["parity", "--task", "detection", "--variant", "retina"],
     "unknown variant 'retina' of task 'detection'; expected one of ['faster_rcnn', 'yolo']"),
])
def test_bad_names_exit_2_with_the_valid_ones(argv, message, capsys):
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.export
def test_parity_json_holds_all_levels_all_ok(tmp_path):
    out = tmp_path / "out.json"
    proc = subprocess.run([sys.executable, "-m", "compare.cli", "parity", "--task", "classification", "--json",
                           str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["schema"] == "twinvision.results/1"
    entries = results["tasks"]["classification"]["parity"]
    assert {e["what"].split("/")[0] for e in entries} >= {"forward", "loss", "gradients", "training", "onnx"}
    assert all(set(e) >= {"a", "b", "what", "max_abs", "tol", "ok"} and e["ok"] for e in entries)
    assert results["run"]["host"]["cores"] and results["run"]["versions"]["torch"]
    check.validate(results)  # the results schema (compare/schema/results.schema.json)


def test_parity_breach_exits_non_zero(monkeypatch, tmp_path, capsys):
    from compare import parity

    bad = {"a": "torch", "b": "tensorflow", "what": "forward/logits", "max_abs": 1.0, "tol": 1e-5, "ok": False}
    monkeypatch.setattr(parity, "run_parity", lambda *a, **k: [bad])
    assert cli.main(["parity", "--task", "classification", "--json", str(tmp_path / "r.json")]) == 1
    assert "BREACH torch vs tensorflow forward/logits (classification)" in capsys.readouterr().err
    results = json.loads((tmp_path / "r.json").read_text())
    assert results["tasks"]["classification"]["status"] == "failed"
    check.validate(results)


@pytest.mark.parametrize("framework", ["torch", "tensorflow"])
def test_train_command_prints_metrics_and_saves_weights(framework, tmp_path, capsys):
    path = tmp_path / f"{framework}.safetensors"
    assert cli.main(["train", "--task", "classification", "--framework", framework, "--preset", "tiny",
                     "--quiet", "--out", str(path)]) == 0
    out = capsys.readouterr().out
    assert "final metrics" in out and "accuracy" in out and "per_class_recall" in out
    from shared.weights import load_file

    assert "fc.weight" in load_file(path)


@pytest.mark.parametrize("framework,conv", [("torch", "convolution"), ("tensorflow", "Conv2D")])
def test_profile_names_where_a_training_step_goes(framework, conv, capsys):
    """The framework's own profiler over its bare training step: op types with ms per step, convolutions among
    them, and the CPU and TensorFlow's oneDNN decision named (the profile is only meaningful with them)."""
    assert cli.main(["profile", "--task", "classification", "--framework", framework, "--preset", "tiny",
                     "--steps", "2", "--top", "40"]) == 0
    out = capsys.readouterr().out
    assert "TensorFlow oneDNN" in out and "ms a step under the profiler" in out
    rows = [line for line in out.splitlines() if line.startswith("  ") and line.endswith(" ms")]
    assert rows and any(conv in line for line in rows), out
    assert all(float(line.split()[-2]) >= 0 for line in rows)


@pytest.mark.parametrize("argv,message", [
    (["profile", "--task", "classification", "--framework", "torch", "--steps", "0"],
     "argument --steps: expected a positive integer; received '0'"),
    (["report", "--threads", "0"], "argument --threads: expected a positive integer; received '0'"),
    (["report", "--threads", "-3"], "argument --threads: expected a positive integer; received '-3'"),
    (["bench", "--task", "classification", "--threads", "two"], "expected a positive integer; received 'two'"),
    (["history", "--limit", "0"], "argument --limit: expected a positive integer"),
    (["check", "--threshold", "-5"], "argument --threshold: expected a positive number such as 0.25"),
    (["check", "--threshold", "nan"], "argument --threshold: expected a positive number such as 0.25"),
])
def test_bad_option_values_stop_before_any_work(argv, message, capsys):
    """argparse refuses them (exit 2, one usage line and the reason), before a task is loaded."""
    with pytest.raises(SystemExit) as stop:
        cli.main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_report_output_folders_are_checked_before_any_work(tmp_path, capsys, monkeypatch):
    from compare import report

    monkeypatch.setattr(report, "run_report", lambda *a, **k: pytest.fail("the report started"))
    a_file = tmp_path / "file"
    a_file.write_text("")
    assert cli.main(["report", "--out", str(a_file)]) == 2
    assert f"--out {str(a_file)!r}: expected a folder; received an existing file" in capsys.readouterr().err
    assert cli.main(["report", "--out", str(tmp_path / "ok"), "--cache", str(a_file / "cache")]) == 2
    assert f"--cache {str(a_file / 'cache')!r}: expected a folder this user can write" in capsys.readouterr().err
    assert cli.main(["report", "--tasks", "nope", "--out", str(tmp_path / "never")]) == 2
    assert not (tmp_path / "never").exists()  # the task name is checked first: nothing is created


def test_check_names_a_folder_and_history_a_damaged_store(tmp_path, capsys):
    assert cli.main(["check", "--results", str(tmp_path)]) == 2
    assert "is a folder; expected a results.json file" in capsys.readouterr().err
    store = tmp_path / "history.sqlite"
    store.write_bytes(b"not a database, " * 100)
    assert cli.main(["history", "--store", str(store)]) == 2
    err = capsys.readouterr().err
    assert "is not a TwinVision history database" in err and "left as it is" in err
    assert store.read_bytes() == b"not a database, " * 100  # never overwritten
    assert cli.main(["history", "--store", str(tmp_path)]) == 2
    assert "expected the history file" in capsys.readouterr().err


@pytest.mark.export
def test_export_command_writes_every_artifact(tmp_path, capsys):
    assert cli.main(["export", "--task", "classification", "--profile", "quick", "--cache", str(tmp_path)]) == 0
    # One "<artifact> <path>" line each, after the progress lines and the trained models' metrics.
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line and line[0] not in "[ "]
    paths = dict(row for row in rows if len(row) == 2)
    assert set(paths) == {"safetensors", "pt2", "onnx-from-torch", "onnx-from-tensorflow", "saved_model", "keras",
                          "tflite-fp32"}
    from pathlib import Path

    assert all(Path(p).exists() for p in paths.values())


def test_framework_start_up_logs_are_filtered_and_everything_else_passes():
    """TensorFlow's C++ log lines (absl prefix) are dropped from stderr; the command's own lines, a
    traceback and an unknown C++ error are not."""
    from compare.logs import is_noise

    assert is_noise(b"I0000 00:00:1796099685.337760   15455 cudart_stub.cc:31] Could not find cuda drivers\n")
    assert is_noise(b"W0000 00:00:1796099685.1   15455 cpu_feature_guard.cc:227] This TensorFlow binary\n")
    assert is_noise(b"E0000 00:00:1796096763.172291   10778 cuda_platform.cc:52] failed call to cuInit: INTERNAL\n")
    assert is_noise(b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
    assert not is_noise(b"E0000 00:00:1.0   1 op_kernel.cc:9] OOM when allocating tensor\n")
    assert not is_noise(b"twinvision: error: unknown task 'nope'\n") and not is_noise(b"Traceback (most recent...\n")
    code = ("from compare.logs import quiet_framework_logs; quiet_framework_logs(); import tensorflow as tf; "
            "tf.config.list_physical_devices('GPU'); import sys; print('own line', file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "own line" in proc.stderr, proc.stderr
    assert not [line for line in proc.stderr.splitlines() if is_noise(line.encode() + b"\n")], proc.stderr
