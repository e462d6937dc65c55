"""The CI gate: a results.json is acceptable or it is not, and the reasons are printed.

A file is first checked for its structure against the JSON Schema beside this module
(``schema/results.schema.json``, draft 2020-12): a malformed file is refused with one line naming the first
bad place in it, before ``problems`` reads it, so the gate never fails on a KeyError or a TypeError.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable
from pathlib import Path

import jsonschema
from jsonschema.exceptions import ValidationError, best_match

SCHEMA = "twinvision.results/1"
SCHEMA_PATH = Path(__file__).with_name("schema") / "results.schema.json"

# JSON's names of a value's type, with their article, for messages ("expected an object, got an array").
_TYPE_WORDS = {"object": "an object", "array": "an array", "string": "a string", "integer": "an integer",
               "number": "a number", "boolean": "a boolean", "null": "null"}
# Keywords whose failure says less than a sibling's (as jsonschema's best_match ranks them).
_WEAK = {"anyOf", "oneOf", "if", "then", "else", "allOf"}


@functools.cache
def _validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _json_type(value) -> str:
    """The JSON type of a parsed value (bool before int: True is an int in Python)."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return {dict: "object", list: "array", str: "string", type(None): "null"}.get(type(value), type(value).__name__)


def _shown(value) -> str:
    """A value as a message quotes it: scalars as they are (strings shortened), containers by their type."""
    if isinstance(value, (dict, list)):
        return _TYPE_WORDS[_json_type(value)]
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:37] + "...")
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    return repr(value)


def _where(path: Iterable) -> str:
    """A readable JSON path: ``tasks.classification.parity[3]``; a key that is not a plain word is bracketed
    (``tasks["detection.yolo"].speed[0]``) so the dot of a variant's run name is not read as a level."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[\w-]+", part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part)}]"
    return out or "the top level"


def _expected(error: ValidationError) -> str:
    """What the schema wanted at the error's place, and what it found, in words."""
    kind, want, got = error.validator, error.validator_value, error.instance
    if kind == "type":
        wanted = " or ".join(_TYPE_WORDS.get(t, t) for t in ([want] if isinstance(want, str) else want))
        found = _TYPE_WORDS.get(_json_type(got), _json_type(got))
        return f"expected {wanted}, got {found}" + ("" if isinstance(got, (dict, list)) or got is None
                                                     else f" ({_shown(got)})")
    if kind == "enum":
        return f"expected one of {', '.join(map(_shown, want))}; got {_shown(got)}"
    if kind == "const":
        return f"expected {_shown(want)}; got {_shown(got)}"
    if kind in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        sign = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}[kind]
        number = "an integer" if error.schema.get("type") == "integer" else "a number"
        return f"expected {number} {sign} {want}, got {_shown(got)}"
    if kind == "minLength" and want == 1:
        return "expected a non-empty string, got ''"
    if kind == "minItems":
        return f"expected at least {want} item(s), got {len(got)}"
    # "required" reads well as jsonschema words it ("'a' is a required property"); so does the rest, on one line.
    message = " ".join(error.message.split())
    return message if len(message) <= 200 else message[:197] + "..."


def _sortable(path: Iterable) -> tuple:
    """A path as a key that sorts (array indices and object keys never share a level, but be safe)."""
    return tuple((0, part, "") if isinstance(part, int) else (1, 0, part) for part in path)


def _errors(results) -> list[ValidationError]:
    """Every schema violation, the most useful first: the shallowest (a missing "tasks" says more than any
    nested problem), then in path order, a keyword that says what is wrong before a combinator (allOf, if)
    that only says that something under it is."""
    errors = sorted(_validator().iter_errors(results),
                    key=lambda e: (len(e.path), _sortable(e.path), e.validator in _WEAK, str(e.validator)))
    # best_match descends into an anyOf / oneOf's own errors to the one that fits best.
    return [best_match([e]) for e in errors]


def schema_problems(results) -> list[str]:
    """Every place where ``results`` (a parsed results.json) breaks the schema, the most useful first, as
    ``"at <path>: <what was expected>"``; [] for a valid one."""
    return [f"at {_where(e.absolute_path)}: {_expected(e)}" for e in _errors(results)]


def validate(results, name: str = "results.json") -> None:
    """Raise ValueError, one line naming ``name``, the first bad path and what was expected there, if
    ``results`` does not follow the schema of results.json (SCHEMA_PATH)."""
    found = schema_problems(results)
    if found:
        more = f" (and {len(found) - 1} more problem(s))" if len(found) > 1 else ""
        raise ValueError(f"{name} does not follow the results schema: {found[0]}{more}")


def load_results(path: str | Path) -> dict:
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"results file {str(path)!r} is a folder; expected a results.json file (the report writes "
                         f"one into its --out folder)")
    if not path.is_file():
        raise FileNotFoundError(f"results file {str(path)!r} does not exist")
    try:
        results = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"results file {str(path)!r} is not valid JSON: {err}") from None
    # The version first: a file of another schema is named as such, not by its first difference.
    if isinstance(results, dict) and results.get("schema") != SCHEMA:
        raise ValueError(f"results file {str(path)!r} has schema {results.get('schema')!r}; expected {SCHEMA!r}")
    validate(results, f"results file {str(path)!r}")
    return results


def problems(results: dict, baseline: dict | None = None, threshold: float = 0.25) -> list[str]:
    """Everything that breaks the gate: parity breaches, failed tasks / exports / backends, p50 regressions."""
    found = []
    # The reference workloads (ResNets through every backend) are gated like a task: parity, failures, p50.
    blocks = [("tasks", name, task) for name, task in results.get("tasks", {}).items()]
    blocks += [("workloads", name, block) for name, block in (results.get("workloads") or {}).items()]
    for section, name, task in blocks:
        if section == "workloads" and task.get("errors"):
            found.append(f"workload {name}: " + "; ".join(task["errors"][:3]))
        if section == "tasks" and task.get("status") != "ok":
            found.append(f"{name}: task status {task.get('status')!r}: " + "; ".join(task.get("errors", [])[:3]))
        for e in task.get("parity", []):
            if not e.get("ok"):
                found.append(f"{name}: parity breach {e['a']} vs {e['b']} {e['what']}: max_abs {e['max_abs']:.3g} "
                             f"> tol {e['tol']:.3g}")
        # "skipped": the model declares it cannot be exported whole (spec.export_limit), with the reason.
        for row in task.get("exports", []):
            if row.get("status") not in ("ok", "skipped"):
                found.append(f"{name}: export {row['artifact']} failed: {row.get('error', '')}")
        for row in task.get("backends", []):
            if row.get("status") not in ("ok", "skipped"):
                found.append(f"{name}: backend {row['name']} failed: {row.get('error', '')}")
        for row in task.get("compression", []):
            if row.get("status") == "failed":
                found.append(f"{name}: compression {row['variant']} failed: {row.get('error', '')}")
        if baseline is not None:
            before = {(r["backend"], r["batch"]): r["p50_ms"]
                      for r in (baseline.get(section) or {}).get(name, {}).get("speed", [])}
            for row in task.get("speed", []):
                old = before.get((row["backend"], row["batch"]))
                if old and row["p50_ms"] > old * (1 + threshold):
                    found.append(f"{name}: {row['backend']} batch {row['batch']} p50 {row['p50_ms']:.3g} ms is "
                                 f"{row['p50_ms'] / old - 1:+.0%} against the baseline's {old:.3g} ms "
                                 f"(threshold {threshold:.0%})")
    return found
