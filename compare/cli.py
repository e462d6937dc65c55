"""The ``twinvision`` command.

    twinvision tasks                                  list tasks and their status
    twinvision parity --task T [--json PATH]          parity levels L1-L4; non-zero exit on a breach
    twinvision train  --task T --framework F          train one twin, print its metrics, save its weights
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from shared.specs import FRAMEWORKS, PRESETS, TASKS, SpecError, check_framework, check_task, get_spec

SCHEMA = "twinvision.results/1"
DEFAULT_HOME = Path(".twinvision")


def _cmd_tasks(args) -> int:
    width = max(len(n) for n in TASKS)
    for name, entry in TASKS.items():
        answers = ", ".join(str(a) for a in entry.seed_answers)
        print(f"{name:<{width}}  {entry.status:<8} seed answers {answers:<10} {entry.summary}")
    return 0


def _cmd_parity(args) -> int:
    check_task(args.task)  # before the (slow) framework imports
    from . import parity
    from .env import run_info

    levels = tuple(args.levels.split(",")) if args.levels else parity.LEVELS
    started = time.perf_counter()
    entries = parity.run_parity(args.task, args.preset, levels,
                                progress=lambda lv: print(f"[{args.task}] parity level {lv} ...", flush=True))
    failed = [e for e in entries if not e["ok"]]
    print(f"\n{'level':<10} {'a':<28} {'b':<28} {'worst output':<40} {'max_abs':>10} {'tol':>10}  result")
    for row in parity.summarize(entries):
        print(f"{row['what'].split('/')[0]:<10} {row['a']:<28} {row['b']:<28} {row['what']:<40} "
              f"{row['max_abs']:>10.3g} {row['tol']:>10.3g}  {row['count'] - row['failed']}/{row['count']} ok")
    print(f"\n{len(entries) - len(failed)}/{len(entries)} parity checks ok in {time.perf_counter() - started:.1f}s")
    for e in failed:
        print(f"BREACH {e['a']} vs {e['b']} {e['what']}: max_abs {e['max_abs']:.3g} > tol {e['tol']:.3g}"
              + (f" ({e['error']})" if "error" in e else ""), file=sys.stderr)
    if args.json:
        from shared.weights import write_atomic

        results = {"schema": SCHEMA, "run": run_info(args.preset),
                   "tasks": {args.task: {"status": "ok" if not failed else "failed",
                                         "errors": [f"{e['what']}: {e['a']} vs {e['b']}" for e in failed],
                                         "parity": entries}}}
        write_atomic(args.json, json.dumps(results, indent=2))
        print(f"wrote {args.json}")
    return 1 if failed else 0


def _cmd_train(args) -> int:
    check_task(args.task)  # before the (slow) framework imports
    check_framework(args.framework)
    from .frameworks import load_twin

    spec = get_spec(args.task, args.preset)
    twin = load_twin(args.framework, args.task)
    print(f"training {args.task} ({args.preset}) with {args.framework} on {args.device} ...", flush=True)
    started = time.perf_counter()
    model, history = twin.task.train(spec, device=args.device, progress=not args.quiet)
    seconds = time.perf_counter() - started
    from shared import data as D

    metrics = twin.task.evaluate(model, D.load(spec).test, spec, device=args.device)
    out = Path(args.out or DEFAULT_HOME / "weights" / f"{args.task}-{args.preset}-{args.framework}.safetensors")
    twin.bridge.save_weights(model, out, {"task": args.task, "preset": args.preset})
    print(f"\nfinal metrics ({args.framework}, {len(history)} epochs, {seconds:.1f}s):")
    for key, value in metrics.items():
        shown = ", ".join(f"{v:.3f}" for v in value) if isinstance(value, list) else f"{value:.4f}"
        print(f"  {key:<20} {shown}")
    print(f"weights: {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="twinvision", description="PyTorch and TensorFlow twins, compared.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("tasks", help="list tasks and their status").set_defaults(func=_cmd_tasks)

    p = sub.add_parser("parity", help="numerical parity between the twins (L1-L4)")
    p.add_argument("--task", required=True, help=f"one of {sorted(TASKS)}")
    p.add_argument("--preset", default="tiny", choices=PRESETS)
    p.add_argument("--levels", help="comma-separated subset of forward,gradients,training,onnx")
    p.add_argument("--json", type=Path, help="write results.json (schema twinvision.results/1) here")
    p.set_defaults(func=_cmd_parity)

    p = sub.add_parser("train", help="train one twin and print its metrics")
    p.add_argument("--task", required=True, help=f"one of {sorted(TASKS)}")
    p.add_argument("--framework", required=True, help=f"one of {list(FRAMEWORKS)}")
    p.add_argument("--preset", default="standard", choices=PRESETS)
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--out", type=Path, help="where to save the canonical weights (.safetensors)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SpecError as err:
        print(f"twinvision: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
