"""The JSON Schema of results.json (compare/schema/results.schema.json) and `twinvision check`'s use of it.

tests/data/results_min.json is a real quick report of classification, trimmed (a few rows of each table, two
epochs of history, no code panel), with a reference-workload block trimmed from a standard report and each
claim's evidence a list of lines, as compare.claims writes it.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import pytest

from compare import check, cli

FIXTURE = Path(__file__).parent / "data" / "results_min.json"


@pytest.fixture
def results() -> dict:
    return json.loads(FIXTURE.read_text())


def _write(tmp_path: Path, results) -> Path:
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    return path


def test_the_schema_is_a_valid_draft_2020_12_schema_with_a_local_id():
    schema = json.loads(check.SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].startswith("urn:")  # nothing to fetch
    assert schema["properties"]["schema"]["const"] == check.SCHEMA


def test_the_fixture_follows_the_schema_and_passes_check(results, capsys):
    assert check.validate(results) is None and check.schema_problems(results) == []
    assert check.problems(results) == [] and check.problems(results, results) == []
    assert cli.main(["check", "--results", str(FIXTURE)]) == 0
    captured = capsys.readouterr()
    assert "twinvision check: ok (1 task(s), 1 reference workload(s)" in captured.out and captured.err == ""


def _partial(r):
    r["run"]["pending"] = ["detection", "detection.yolo"]
    r["run"]["seconds_left"] = 300.0


def _parity_json(r):
    """What `twinvision parity --json` writes: the run block, and per run status, variant, errors, parity."""
    del r["run"]["seconds"], r["run"]["pending"], r["run"]["seconds_left"]
    r["run"]["profile"] = "tiny"  # the preset
    task = r["tasks"]["classification"]
    r["tasks"] = {"classification": {"status": "ok", "variant": None, "errors": [], "parity": task["parity"]}}
    for key in ("claims", "timing", "workloads"):
        del r[key]


def _study(r):
    r["tasks"]["classification"]["studies"] = [{
        "name": "anchors", "title": "Anchor sets", "text": "Share of boxes matched", "seed_answers": [2],
        "columns": ["config", "recall@0.5"], "rows": [{"config": "base", "recall@0.5": 0.95}], "plot": None,
        "images": {}, "verdicts": [{"claim": "Anchors of several sizes help", "verdict": "tie",
                                    "evidence": "recall 0.95 vs 0.95"}]}]


def _newer_fields(r):
    """Fields a newer writer adds: every object stays open (the summary of compare/summary.py too)."""
    from compare.summary import summarize

    r["summary"] = {**summarize(r), "headline": "fastest at batch 1: tflite-int8"}
    r["tasks"]["classification"]["speed"][0]["p99_ms"] = 3.0
    r["tasks"]["classification"]["new_table"] = [{"x": 1}]
    r["claims"][0]["verdict"] = "tie"


def _failed_run(r):
    """The block run_report writes when a run raises, beside a variant's (a dotted run name)."""
    r["tasks"]["detection.yolo"] = {"status": "failed", "errors": ["RuntimeError: boom"], "tracebacks": ["..."],
                                    "parity": [], "speed": [], "size": [], "quality": {}, "task": "detection",
                                    "variant": "yolo"}


@pytest.mark.parametrize("change", [_partial, _parity_json, _study, _newer_fields, _failed_run])
def test_other_valid_shapes(results, change):
    change(results)
    assert check.schema_problems(results) == []
    check.problems(results)  # never raises on a valid file


# (id, change to the fixture, the path the error names, what it says was expected)
BAD = [
    ("tasks-a-list", lambda r: r.update(tasks=[r["tasks"]["classification"]]),
     "at tasks:", "expected an object, got an array"),
    ("no-tasks", lambda r: r.pop("tasks"), "at the top level:", "'tasks' is a required property"),
    ("parity-row-without-a", lambda r: r["tasks"]["classification"]["parity"][3].pop("a"),
     "at tasks.classification.parity[3]:", "'a' is a required property"),
    ("speed-row-without-batch", lambda r: r["tasks"]["classification"]["speed"][0].pop("batch"),
     "at tasks.classification.speed[0]:", "'batch' is a required property"),
    ("batch-a-string", lambda r: r["tasks"]["classification"]["speed"][1].update(batch="32"),
     "at tasks.classification.speed[1].batch:", "expected an integer, got a string ('32')"),
    ("p50-negative", lambda r: r["tasks"]["classification"]["speed"][2].update(p50_ms=-1.5),
     "at tasks.classification.speed[2].p50_ms:", "expected a number > 0, got -1.5"),
    ("unknown-claim-verdict", lambda r: r["claims"][2].update(verdict="probably"),
     "at claims[2].verdict:", "expected one of 'supported', 'refuted', 'mixed', 'tie', 'not measurable here'; "
                              "got 'probably'"),
    ("no-run", lambda r: r.pop("run"), "at the top level:", "'run' is a required property"),
    ("task-status-unknown", lambda r: r["tasks"]["classification"].update(status="done"),
     "at tasks.classification.status:", "expected one of 'ok', 'failed'; got 'done'"),
    ("claim-evidence-a-string", lambda r: r["claims"][0].update(evidence="measured: faster"),
     "at claims[0].evidence:", "expected an array, got a string ('measured: faster')"),
    ("failed-export-without-its-error",
     lambda r: r["tasks"]["classification"]["exports"][1].update(status="failed"),
     "at tasks.classification.exports[1]:", "'error' is a required property"),
    ("variant-run-name-bracketed",
     lambda r: r["tasks"].update({"detection.yolo": {"status": "ok", "errors": [], "parity": {}}}),
     'at tasks["detection.yolo"].parity:', "expected an array, got an object"),
    ("workload-speed-row", lambda r: r["workloads"]["resnet18"]["speed"][0].update(cv=None),
     "at workloads.resnet18.speed[0].cv:", "expected a number, got null"),
]


@pytest.mark.parametrize("change,where,expected", [case[1:] for case in BAD], ids=[case[0] for case in BAD])
def test_check_refuses_a_malformed_file_in_one_line(results, change, where, expected, tmp_path, capsys):
    change(results)
    path = _write(tmp_path, results)
    assert cli.main(["check", "--results", str(path)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err and captured.out == "", captured.err
    assert lines[0].startswith(f"twinvision check: error: results file {str(path)!r} does not follow the "
                               f"results schema: {where} {expected}"), lines[0]
    with pytest.raises(ValueError, match="does not follow the results schema"):
        check.validate(results)


def test_the_shallowest_problem_is_named_first_and_the_rest_counted(results):
    del results["tasks"]
    results["claims"][0]["verdict"] = "probably"
    results["workloads"]["resnet18"]["parity"][0].pop("ok")
    with pytest.raises(ValueError) as err:
        check.validate(results, "r.json")
    assert str(err.value) == ("r.json does not follow the results schema: at the top level: 'tasks' is a required "
                              "property (and 2 more problem(s))")
    assert check.schema_problems(results)[1:] == [
        "at claims[0].verdict: expected one of 'supported', 'refuted', 'mixed', 'tie', 'not measurable here'; "
        "got 'probably'",
        "at workloads.resnet18.parity[0]: 'ok' is a required property"]


def test_a_file_that_is_not_an_object_or_of_another_schema(tmp_path, capsys):
    path = _write(tmp_path, [1, 2])
    assert cli.main(["check", "--results", str(path)]) == 2
    assert "at the top level: expected an object, got an array" in capsys.readouterr().err
    path = _write(tmp_path, {"schema": "twinvision.results/0", "tasks": []})
    assert cli.main(["check", "--results", str(path)]) == 2
    assert "has schema 'twinvision.results/0'; expected 'twinvision.results/1'" in capsys.readouterr().err


def test_a_malformed_baseline_is_refused_too(results, tmp_path, capsys):
    good = _write(tmp_path, results)
    results["tasks"]["classification"]["speed"][0]["p50_ms"] = "fast"
    bad = tmp_path / "baseline.json"
    bad.write_text(json.dumps(results))
    assert cli.main(["check", "--results", str(good), "--baseline", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "at tasks.classification.speed[0].p50_ms: expected a number, got a string" in err


def test_problems_never_raise_on_valid_files(results):
    """Every row check reads, with the fewest fields the schema allows, failing in every way it can."""
    minimal = copy.deepcopy(results)
    task = minimal["tasks"]["classification"]
    task.update(status="failed", errors=["boom"])
    task["parity"][0].update(ok=False, max_abs=float("inf"))
    task["exports"][0] = {"artifact": "pt2", "status": "failed", "error": "x"}
    task["backends"][0] = {"name": "torch", "status": "failed", "error": "x"}
    task["compression"][0] = {"variant": "torch-pruned-50", "status": "failed", "error": "x"}
    task["speed"][0] = {"backend": "torch", "batch": 1, "p50_ms": 1e9, "p90_ms": 1e9, "cv": 0.0, "runs": 1}
    minimal["workloads"]["resnet18"]["errors"] = ["y"]
    assert check.schema_problems(minimal) == []
    found = check.problems(minimal, results)
    assert any("parity breach" in p for p in found) and any("p50" in p for p in found)


def test_the_summary_block_is_checked(results):
    """The answers-first summary, as the report writes it, validates; a winner outside the enum does not."""
    from compare.summary import summarize

    results["summary"] = summarize(results)
    assert results["summary"]["rows"] and check.schema_problems(results) == []
    results["summary"]["rows"][0]["winner"] = "both"
    (first, *_) = check.schema_problems(results)
    assert first.startswith("at summary.rows[0].winner: expected one of 'torch', 'tensorflow', 'tie'"), first
