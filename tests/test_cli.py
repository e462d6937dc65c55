"""The `twinvision` command: tasks, parity --json, train, and its errors."""

from __future__ import annotations

import json
from pathlib import Path
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
    (["parity", "--task", "tracking"], "task 'tracking' is planned"),
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


# -- every bad input of the command line: one clear line, exit 2, no traceback, nothing half-written -----------

def _results_file(tmp_path, mutate) -> str:
    """A schema-valid results file (tests/data/results_min.json) changed by ``mutate``."""
    results = json.loads((Path(__file__).parent / "data" / "results_min.json").read_text())
    results = mutate(results) or results
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results) if not isinstance(results, str) else results)
    return str(path)


def _damaged_store(tmp_path) -> str:
    path = tmp_path / "history.sqlite"
    path.write_bytes(b"not a database, " * 100)
    return str(path)


def _file(tmp_path) -> str:
    (tmp_path / "a-file").write_text("")
    return str(tmp_path / "a-file")


def _parity_row(r):
    del r["tasks"]["classification"]["parity"][0]["a"]


def _speed_batch(r):
    r["tasks"]["classification"]["speed"][0]["batch"] = "32"


BAD_COMMAND_LINES = {  # case: (argv from tmp_path, expected message)
    "check-missing-file": (lambda t: ["check", "--results", str(t / "none.json")], "does not exist"),
    "check-folder": (lambda t: ["check", "--results", str(t)], "is a folder; expected a results.json file"),
    "check-invalid-json": (lambda t: ["check", "--results", _results_file(t, lambda r: "{not json")],
                           "is not valid JSON"),
    "check-wrong-schema": (lambda t: ["check", "--results", _results_file(t, lambda r: r.update(schema="other/9"))],
                           "has schema 'other/9'; expected 'twinvision.results/1'"),
    "check-tasks-a-list": (lambda t: ["check", "--results", _results_file(t, lambda r: r.update(tasks=[]))],
                           "at tasks: expected an object, got an array"),
    "check-no-tasks": (lambda t: ["check", "--results", _results_file(t, lambda r: r.pop("tasks") and None)],
                       "'tasks' is a required property"),
    "check-parity-row-without-a": (lambda t: ["check", "--results", _results_file(t, _parity_row)],
                                   "at tasks.classification.parity[0]: 'a' is a required property"),
    "check-speed-batch-a-string": (lambda t: ["check", "--results", _results_file(t, _speed_batch)],
                                   "speed[0].batch: expected an integer, got a string"),
    "check-bad-baseline": (lambda t: ["check", "--results", _results_file(t, lambda r: None), "--baseline",
                                      str(t / "none.json")], "none.json' does not exist"),
    "check-threshold-negative": (lambda t: ["check", "--threshold", "-5"], "expected a positive number"),
    "check-threshold-nan": (lambda t: ["check", "--threshold", "nan"], "expected a positive number"),
    "history-damaged-store": (lambda t: ["history", "--store", _damaged_store(t)],
                              "is not a TwinVision history database"),
    "history-store-a-folder": (lambda t: ["history", "--store", str(t)], "expected the history file"),
    "history-limit-zero": (lambda t: ["history", "--limit", "0"], "expected a positive integer; received '0'"),
    "report-unknown-task": (lambda t: ["report", "--tasks", "nope", "--out", str(t / "out")], "unknown task 'nope'"),
    "report-unknown-profile": (lambda t: ["report", "--profile", "fast", "--out", str(t / "out")],
                               "invalid choice: 'fast'"),
    "report-threads-zero": (lambda t: ["report", "--threads", "0", "--out", str(t / "out")],
                            "expected a positive integer; received '0'"),
    "report-threads-negative": (lambda t: ["report", "--threads", "-3", "--out", str(t / "out")],
                                "expected a positive integer; received '-3'"),
    "report-out-a-file": (lambda t: ["report", "--out", _file(t)], "expected a folder; received an existing file"),
    "report-out-forbidden": (lambda t: ["report", "--out", "/proc/forbidden"],
                             "--out '/proc/forbidden': expected a folder this user can write"),
    "report-cache-under-a-file": (lambda t: ["report", "--out", str(t / "out"), "--cache", _file(t) + "/cache"],
                                  "expected a folder this user can write"),
    "parity-unknown-task": (lambda t: ["parity", "--task", "nope"], "unknown task 'nope'; expected one of"),
    "parity-planned-task": (lambda t: ["parity", "--task", "tracking"], "task 'tracking' is planned"),
    "parity-unknown-variant": (lambda t: ["parity", "--task", "detection", "--variant", "retina"],
                               "unknown variant 'retina' of task 'detection'"),
    "parity-unknown-level": (lambda t: ["parity", "--task", "classification", "--levels", "forward,bogus"],
                             "expected a comma-separated subset of ['forward', 'gradients', 'training', 'onnx']"),
    "parity-json-a-folder": (lambda t: ["parity", "--task", "classification", "--json", str(t)],
                             "expected a file name; received an existing folder"),
    "train-unknown-framework": (lambda t: ["train", "--task", "classification", "--framework", "jax"],
                                "unknown framework 'jax'"),
    "train-unknown-device": (lambda t: ["train", "--task", "classification", "--framework", "torch", "--device",
                                        "tpu"], "invalid choice: 'tpu'"),
    "train-out-forbidden": (lambda t: ["train", "--task", "classification", "--framework", "torch", "--out",
                                       "/proc/forbidden/w.safetensors"], "expected a folder this user can write"),
    "train-workers-not-dividing-the-batch": (lambda t: ["train", "--task", "classification", "--framework", "torch",
                                                        "--preset", "tiny", "--workers", "3"],
                                             "--workers 3: the preset's batch of 32 images does not split over 3"),
    "train-workers-zero": (lambda t: ["train", "--task", "classification", "--framework", "torch", "--workers", "0"],
                           "argument --workers: expected a positive integer; received '0'"),
    "train-steps-without-workers": (lambda t: ["train", "--task", "classification", "--framework", "torch",
                                               "--steps", "5"], "--steps: only with --workers"),
    "train-nodes-without-master": (lambda t: ["train", "--task", "classification", "--framework", "torch",
                                              "--workers", "1", "--nodes", "2"],
                                   "master: expected HOST:PORT of node 0 when there are 2 nodes; received ''"),
    "train-node-rank-out-of-range": (lambda t: ["train", "--task", "classification", "--framework", "tensorflow",
                                                "--workers", "1", "--nodes", "2", "--node-rank", "2", "--master",
                                                "127.0.0.1:29500"], "node rank: expected 0 to 1; received 2"),
    "train-hosts-not-one-per-node": (lambda t: ["train", "--task", "classification", "--framework", "tensorflow",
                                                "--workers", "1", "--nodes", "2", "--master", "10.0.0.1:29500",
                                                "--hosts", "10.0.0.1"],
                                     "hosts: expected one per node (2); received ['10.0.0.1']"),
    "train-master-without-workers": (lambda t: ["train", "--task", "classification", "--framework", "torch",
                                                "--master", "127.0.0.1:29500"], "only with --workers"),
    "bench-cache-forbidden": (lambda t: ["bench", "--task", "classification", "--cache", "/proc/forbidden"],
                              "expected a folder this user can write"),
    "export-unknown-task": (lambda t: ["export", "--task", "nope"], "unknown task 'nope'"),
    "profile-steps-zero": (lambda t: ["profile", "--task", "classification", "--framework", "torch", "--steps", "0"],
                           "expected a positive integer; received '0'"),
    "guide-write-forbidden": (lambda t: ["guide", "--write", "/proc/forbidden/GUIDE.md"],
                              "expected a folder this user can write"),
    "unknown-command": (lambda t: ["deploy"], "invalid choice: 'deploy'"),
}


@pytest.mark.parametrize("case", BAD_COMMAND_LINES)
def test_every_bad_input_gets_one_clear_line_and_exit_2(case, tmp_path, capsys, monkeypatch):
    """The command refuses each before any work: exit 2, one line on stderr naming the bad value and what was
    expected, no traceback, and no report folder left behind (the `report` of a bad option never starts)."""
    from compare import report

    monkeypatch.setattr(report, "run_report", lambda *a, **k: pytest.fail("the report started"))
    make_argv, message = BAD_COMMAND_LINES[case]
    argv = make_argv(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    try:
        code = cli.main(argv)
    except SystemExit as stop:  # argparse's refusals
        code = stop.code
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert code == 2, captured
    assert len(lines) == 1 and message in lines[0], lines
    assert "Traceback" not in captured.err + captured.out
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing created, nothing half-written


def test_report_device_cuda_without_a_gpu_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    """`report --device cuda` where there is no GPU (the machine's answer replaced, so the test holds on a GPU
    machine too): exit 2, the reason, nothing created; `auto` falls back to the CPU."""
    from compare import report

    monkeypatch.setattr(report, "gpu_name", lambda: None)
    monkeypatch.setattr(report, "run_report", lambda *a, **k: pytest.fail("the report started"))
    assert cli.main(["report", "--device", "cuda", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--device cuda: no CUDA GPU on this machine" in err[0], err
    assert not (tmp_path / "out").exists()
    assert report.training_device("auto") == "cpu"
    monkeypatch.setattr(report, "gpu_name", lambda: "A GPU")
    assert report.training_device("auto") == "cuda" and report.training_device("cuda") == "cuda"


@pytest.mark.gpu
def test_report_trains_on_the_gpu_and_serves_from_the_cpu(tmp_path):
    """`report --device cuda`: both frameworks train on the GPU, and the exports and backends still run (on the
    CPU) from the trained weights, with parity."""
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU; none on this machine")
    from compare.check import problems
    from compare.report import run_report

    results = run_report(["classification"], "quick", tmp_path / "out", tmp_path / "cache", device="cuda",
                         printer=lambda line: None)
    assert results["run"]["training_device"] == "cuda"
    assert results["tasks"]["classification"]["status"] == "ok" and not problems(results)


def test_train_on_two_workers_saves_the_weights_and_prints_metrics(tmp_path, capsys):
    """`train --workers 2`: torchrun and DDP on loopback (the equivalence itself: tests/test_data_parallel.py)."""
    out = tmp_path / "w.safetensors"
    assert cli.main(["train", "--task", "classification", "--framework", "torch", "--preset", "tiny", "--workers",
                     "2", "--steps", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "on 2 worker(s), 2 steps of 32 images (16 per worker)" in printed and "accuracy" in printed
    from shared.weights import read_metadata

    meta = read_metadata(out)
    assert meta["workers"] == "2" and meta["steps"] == "2" and len(meta["losses"].split(",")) == 2
