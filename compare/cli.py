"""The ``twinvision`` command.

    twinvision tasks                                  list tasks and their status
    twinvision report [--tasks ..] [--profile quick|standard] [--out DIR]
    twinvision parity --task T [--json PATH]          parity levels L1-L4; non-zero exit on a breach
    twinvision train  --task T --framework F [--workers N]   train one twin (on N processes), print its metrics
    twinvision export --task T                        write every artifact of both twins
    twinvision bench  --task T                        speed of every backend
    twinvision profile --task T --framework F         where a training step's time goes, per operation
    twinvision check  [--results PATH] [--baseline PATH]   non-zero exit on a breach
    twinvision history                                earlier runs from the local store
    twinvision guide  [--write PATH]                  the study guide (30 questions -> code and report)

``twinvision --verbose <command>`` keeps TensorFlow's and CUDA's start-up log lines on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from shared.specs import (FRAMEWORKS, PRESETS, TASKS, SpecError, check_framework, check_task, get_spec,
                          run_name)

SCHEMA = "twinvision.results/1"
DEFAULT_HOME = Path(".twinvision")


def _count(text: str) -> int:
    """An option that counts something (threads, steps, rows): a positive integer, checked before any work."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer; received {text!r}")
    return value


def _fraction(text: str) -> float:
    """A relative threshold such as 0.25 (25%): a positive finite number."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number such as 0.25 (25%); received {text!r}")
    return value


def _check_folder(path: Path, option: str) -> None:
    """Whether ``path`` is, or can become, a folder this user writes, without creating anything: an existing
    file on the way, or a nearest existing folder that is not writable, is refused with the reason."""
    if path.exists() and not path.is_dir():
        raise SpecError(f"{option} {str(path)!r}: expected a folder; received an existing file")
    parent = path
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        what = "an existing file" if parent.exists() and not parent.is_dir() else "a folder it may not write"
        raise SpecError(f"{option} {str(path)!r}: expected a folder this user can write; {str(parent)!r} is {what}")


def _writable_folder(path: Path, option: str) -> Path:
    """Create ``path`` (and its parents) now, before any work, so a bad ``--out`` or ``--cache`` fails in a
    second with its reason instead of after minutes of training."""
    _check_folder(path, option)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".twinvision-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise SpecError(f"{option} {str(path)!r}: expected a folder this user can write; "
                        f"{err.strerror or err}") from None
    return path


def _cmd_tasks(args) -> int:
    width = max(len(n) for n in TASKS)
    for name, entry in TASKS.items():
        answers = ", ".join(str(a) for a in entry.seed_answers)
        print(f"{name:<{width}}  {entry.status:<8} seed answers {answers:<10} {entry.summary}")
    return 0


def _cmd_parity(args) -> int:
    entry = check_task(args.task)  # before the (slow) framework imports
    if args.variant is not None and args.variant not in entry.variants:
        raise SpecError(f"unknown variant {args.variant!r} of task {args.task!r}; expected one of "
                        f"{sorted(entry.variants)}")
    if args.json:
        _writable_file(args.json, "--json")
    from . import parity
    from .env import run_info

    levels = args.levels or parity.LEVELS
    variants = [args.variant] if args.variant else [None, *entry.variants]
    started, runs, failed = time.perf_counter(), {}, []
    for variant in variants:
        name = run_name(args.task, variant)
        entries = parity.run_parity(args.task, args.preset, levels, variant=variant,
                                    progress=lambda lv, n=name: print(f"[{n}] parity level {lv} ...", flush=True))
        broken = [e for e in entries if not e["ok"]]
        runs[name] = {"status": "ok" if not broken else "failed", "variant": variant,
                      "errors": [f"{e['what']}: {e['a']} vs {e['b']}" for e in broken], "parity": entries}
        failed += [(name, e) for e in broken]
        print(f"\n{name}\n{'level':<10} {'a':<28} {'b':<28} {'worst output':<40} {'max_abs':>10} {'tol':>10}  result")
        for row in parity.summarize(entries):
            print(f"{row['what'].split('/')[0]:<10} {row['a']:<28} {row['b']:<28} {row['what']:<40} "
                  f"{row['max_abs']:>10.3g} {row['tol']:>10.3g}  {row['count'] - row['failed']}/{row['count']} ok")
    total = sum(len(r["parity"]) for r in runs.values())
    print(f"\n{total - len(failed)}/{total} parity checks ok in {time.perf_counter() - started:.1f}s")
    for name, e in failed:
        print(f"BREACH {e['a']} vs {e['b']} {e['what']} ({name}): max_abs {e['max_abs']:.3g} > tol {e['tol']:.3g}"
              + (f" ({e['error']})" if "error" in e else ""), file=sys.stderr)
    if args.json:
        from shared.weights import write_atomic

        results = {"schema": SCHEMA, "run": run_info(args.preset), "tasks": runs}
        write_atomic(args.json, json.dumps(results, indent=2))
        print(f"wrote {args.json}")
    return 1 if failed else 0


def _print_metrics(metrics: dict) -> None:
    """One line per metric; "-" where a metric had nothing to measure (None: no large boxes in the split)."""
    for key, value in metrics.items():
        if isinstance(value, list):
            shown = ", ".join("-" if v is None else f"{v:.3f}" for v in value)
        else:
            shown = "-" if value is None else f"{value:.4f}"
        print(f"  {key:<20} {shown}")


def _cmd_train(args) -> int:
    check_task(args.task)  # before the (slow) framework imports
    check_framework(args.framework)
    if args.out:
        _writable_file(args.out, "--out")
    if args.workers:
        return _train_data_parallel(args)
    if args.nodes > 1 or args.master or args.hosts or args.node_rank or args.checkpoint or args.max_restarts:
        raise SpecError("--nodes, --node-rank, --master, --hosts, --checkpoint and --max-restarts: only with "
                        "--workers (the data-parallel job)")
    if args.steps:
        raise SpecError("--steps: only with --workers (the data-parallel job); one process trains the preset's "
                        "whole plan")
    from .frameworks import load_twin

    from .pipeline import task_data

    spec = get_spec(args.task, args.preset)
    twin = load_twin(args.framework, args.task)
    # The report's cache: a task whose data needs another run's trained model finds it there.
    data = task_data(spec, args.preset, DEFAULT_HOME / "cache")
    print(f"training {args.task} ({args.preset}) with {args.framework} on {args.device} ...", flush=True)
    started = time.perf_counter()
    model, history = twin.task.train(spec, data, device=args.device, progress=not args.quiet)
    seconds = time.perf_counter() - started
    metrics = twin.task.evaluate(model, data.test, spec, device=args.device)
    out = Path(args.out or DEFAULT_HOME / "weights" / f"{args.task}-{args.preset}-{args.framework}.safetensors")
    twin.bridge.save_weights(model, out, {"task": args.task, "preset": args.preset})
    print(f"\nfinal metrics ({args.framework}, {len(history)} epochs, {seconds:.1f}s):")
    _print_metrics(metrics)
    print(f"weights: {out}")
    return 0


def _train_data_parallel(args) -> int:
    """``train --workers N [--nodes M ...]``: the preset's batch plan (or its first ``--steps`` batches) on N
    processes per machine of one framework's engine (compare/data_parallel.py); node 0 then evaluates the
    trained weights and saves them."""
    from shared import data as D

    from .data_parallel import Cluster

    try:
        cluster = Cluster(args.nodes, args.node_rank, args.master or "",
                          tuple(h for h in (args.hosts or "").split(",") if h))
    except ValueError as err:
        raise SpecError(str(err)) from None
    spec = get_spec(args.task, args.preset)
    batch, world = spec.train.batch_size, args.workers * args.nodes
    if batch % world:
        raise SpecError(f"--workers {args.workers}: the preset's batch of {batch} images does not split over "
                        f"{world} workers; expected a divisor of {batch}")
    full = len(D.full_batches(len(D.load(spec).train), batch, spec.train.epochs, spec.train.seed))
    steps = min(args.steps or full, full)
    out = Path(args.out or DEFAULT_HOME / "weights" /
               f"{args.task}-{args.preset}-{args.framework}-{world}w.safetensors")
    _writable_file(out, "--out")
    from .data_parallel import train
    from .frameworks import load_twin

    print(f"training {args.task} ({args.preset}) with {args.framework} on {world} worker(s)"
          + (f" ({args.nodes} nodes, this one {args.node_rank})" if args.nodes > 1 else "")
          + f", {steps} steps of {batch} images ({batch // world} per worker) ...", flush=True)
    if args.max_restarts < 0 or (args.max_restarts and not args.checkpoint):
        raise SpecError(f"--max-restarts {args.max_restarts}: expected 0 or more, and a --checkpoint folder to "
                        f"resume from")
    if args.checkpoint:
        _writable_folder(args.checkpoint, "--checkpoint")
    result = train(args.framework, args.task, args.preset, args.workers, steps, batch, out,
                   timeout_s=120 + 5 * steps, device=args.device, cluster=cluster, checkpoint=args.checkpoint,
                   every=args.every, max_restarts=args.max_restarts)
    for resume in result.get("resumes", []):
        print(f"restarted from the checkpoint of step {resume['from_step']}: {resume['lost_steps']} step(s) lost")
    if args.node_rank:
        print(f"node {args.node_rank}: its {args.workers} worker(s) finished in {result['job_seconds']:.1f}s; node 0 "
              f"holds the weights")
        return 0
    twin = load_twin(args.framework, args.task)
    model = twin.bridge.import_weights(twin.task.build_model(spec), result["weights"])
    metrics = twin.task.evaluate(model, D.load(spec).test, spec)
    rate = f", {result['images_per_s']:.0f} images/s after the first step" if result["images_per_s"] else ""
    print(f"\nfinal metrics ({args.framework}, {world} workers, {steps} steps, "
          f"{result['train_seconds'] + result['first_step_seconds']:.1f}s of training{rate}):")
    _print_metrics(metrics)
    print(f"weights: {out}")
    return 0


def _cmd_report(args) -> int:
    tasks = args.tasks or None
    for task in tasks or []:
        check_task(task)
    _check_folder(args.out, "--out")  # both checked before either is created
    _check_folder(args.cache, "--cache")
    from .report import run_report, training_device

    try:
        training_device(args.device)  # before any folder is made or any work starts
    except ValueError as err:
        raise SpecError(str(err)) from None
    _writable_folder(args.out, "--out")
    _writable_folder(args.cache, "--cache")

    results = run_report(tasks, args.profile, args.out, args.cache, args.threads, device=args.device)
    failed = [n for n, t in results["tasks"].items() if t.get("status") != "ok"]
    if failed:
        print(f"tasks that failed (recorded in the report): {failed}", file=sys.stderr)
    return 0


def _cmd_bench(args) -> int:
    """The report's measurements for one task, printed as a table (same code path as the report)."""
    check_task(args.task)
    _writable_folder(args.cache, "--cache")
    from . import backends as B
    from .pipeline import TaskRun, planned_steps
    from .progress import CostBook, Progress

    threads = args.threads or os.cpu_count() or 1
    B.set_threads(threads)
    progress = Progress(planned_steps(args.task, profile=args.profile), CostBook(args.cache, args.profile))
    result = TaskRun(args.task, args.profile, Path(args.cache), threads, progress).run()
    progress.finish()
    print(f"\n{'backend':<30} {'batch':>5} {'p50 ms':>10} {'p90 ms':>10} {'cv':>6} {'runs':>5}")
    for r in result["speed"]:
        print(f"{r['backend']:<30} {r['batch']:>5} {r['p50_ms']:>10.4g} {r['p90_ms']:>10.4g} {r['cv']:>6.2f} "
              f"{r['runs']:>5}")
    for r in result["size"]:
        print(f"{r['artifact']:<30} {r['bytes']:>12} bytes")
    for err in result["errors"]:
        print(f"FAILED {err}", file=sys.stderr)
    return 1 if result["errors"] else 0


def _cmd_profile(args) -> int:
    """Where a bare training step's time goes, per operation type, on this CPU."""
    check_task(args.task)
    check_framework(args.framework)
    from shared import data as D

    from . import backends as B
    from .env import run_info
    from .frameworks import load_twin
    from .profile import profile_step

    threads = args.threads or os.cpu_count() or 1
    B.set_threads(threads)
    spec = get_spec(args.task, args.preset)
    twin = load_twin(args.framework, args.task)
    host = run_info("profile", threads)["host"]
    onednn = host["tensorflow_onednn"]
    print(f"{args.task} ({args.preset}), {args.framework}, batch {spec.train.batch_size}, {threads} threads on "
          f"{host['cpu']} ({host['isa']}); TensorFlow oneDNN {'on' if onednn['enabled'] else 'off'} "
          f"({onednn['source']})", flush=True)
    result = profile_step(twin, spec, D.load(spec).train, twin.task.build_model(spec), args.steps)
    print(f"{result['wall_ms_per_step']:.1f} ms a step under the profiler; time per op type (summed over threads):")
    for name, ms in list(result["ops_ms_per_step"].items())[:args.top]:
        print(f"  {name:<48} {ms:8.2f} ms")
    return 0


def _cmd_export(args) -> int:
    """Train (or take from the cache) and export every artifact of both twins; prints their paths."""
    check_task(args.task)
    _writable_folder(args.cache, "--cache")
    from . import backends as B
    from .pipeline import TaskRun
    from .progress import Progress

    B.set_threads(os.cpu_count() or 1)
    run = TaskRun(args.task, args.profile, Path(args.cache), os.cpu_count() or 1, Progress([]))
    artifacts = run.exports()
    for name, path in artifacts.items():
        print(f"{name:<24} {path}")
    for err in run.result["errors"]:
        print(f"FAILED {err}", file=sys.stderr)
    return 1 if run.result["errors"] else 0


def _cmd_check(args) -> int:
    from .check import load_results, problems

    try:
        results = load_results(args.results)
        baseline = load_results(args.baseline) if args.baseline else None
    except (FileNotFoundError, ValueError) as err:
        print(f"twinvision check: error: {err}", file=sys.stderr)
        return 2
    found = problems(results, baseline, args.threshold)
    workloads = results.get("workloads") or {}
    n_parity = sum(len(t.get("parity", [])) for t in [*results["tasks"].values(), *workloads.values()])
    if found:
        print(f"twinvision check: {len(found)} problem(s) in {args.results}:")
        for line in found:
            print(f"  - {line}")
        return 1
    pending = (results.get("run") or {}).get("pending") or []
    print(f"twinvision check: ok ({len(results['tasks'])} task(s), {len(workloads)} reference workload(s), "
          f"{n_parity} parity checks"
          + (f", no p50 regression beyond {args.threshold:.0%} against {args.baseline}" if baseline else "") + ")"
          + (f"; a partial report: {len(pending)} run(s) still pending ({', '.join(pending)})" if pending else ""))
    return 0


def _cmd_history(args) -> int:
    from .store import StoreError, runs

    if args.store.is_dir():
        raise SpecError(f"--store {str(args.store)!r}: expected the history file (history.sqlite); received a folder")
    try:
        rows = runs(args.store, args.limit)
    except StoreError as err:
        print(f"twinvision history: error: {err}", file=sys.stderr)
        return 2
    if not rows:
        print(f"no runs recorded in {args.store}")
        return 0
    for r in rows:
        print(f"{r['id']}  {r['started']}  {r['profile']:<8} {r['status']:<6} parity {r['parity_ok']}/"
              f"{r['parity_total']}  {r['out_dir']}")
        for task, figures in r["summary"].items():
            metric = figures.get("metric", "accuracy")
            quality = ", ".join(f"{fw} {m[metric]:.3f}" for fw, m in figures["quality"].items()
                                if m and m.get(metric) is not None)
            print(f"    {task}: {figures['status']}, fastest at batch 1: {figures['fastest_b1']}; {metric} "
                  f"{quality or '-'}")
    return 0


def _cmd_guide(args) -> int:
    from .guide import markdown

    if args.write:
        _writable_file(args.write, "--write")
    text = markdown()
    if args.write:
        from shared.weights import write_atomic

        write_atomic(args.write, text)
        print(f"wrote {args.write}")
    else:
        print(text)
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: the reason and where the usage is, not the usage block (sub-commands
    inherit it through add_subparsers)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (usage: {self.prog} --help)\n")


def _levels(text: str) -> tuple[str, ...]:
    """--levels: a comma-separated subset of the parity levels, checked before any model is built."""
    from .parity import LEVELS

    levels = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [lv for lv in levels if lv not in LEVELS]
    if unknown or not levels:
        raise argparse.ArgumentTypeError(f"expected a comma-separated subset of {list(LEVELS)}; received {text!r}")
    return levels


def _writable_file(path: Path, option: str) -> Path:
    """An output file's folder, created and write-tested now (as ``_writable_folder``), before any work."""
    if path.is_dir():
        raise SpecError(f"{option} {str(path)!r}: expected a file name; received an existing folder")
    _writable_folder(path.parent, option)
    return path


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="twinvision", description="PyTorch and TensorFlow twins, compared.")
    parser.add_argument("--verbose", action="store_true",
                        help="keep TensorFlow's and CUDA's start-up log lines (hidden by default: compare/logs.py)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("tasks", help="list tasks and their status").set_defaults(func=_cmd_tasks)

    p = sub.add_parser("parity", help="numerical parity between the twins (L1-L4)")
    p.add_argument("--task", required=True, help=f"one of {sorted(TASKS)}")
    p.add_argument("--preset", default="tiny", choices=PRESETS)
    p.add_argument("--levels", type=_levels, help="comma-separated subset of forward,gradients,training,onnx")
    p.add_argument("--variant", help="one variant of the task (default: the main model and every variant)")
    p.add_argument("--json", type=Path, help="write results.json (schema twinvision.results/1) here")
    p.set_defaults(func=_cmd_parity)

    p = sub.add_parser("report", help="the full side-by-side report: index.html, report.md, results.json")
    p.add_argument("--tasks", nargs="+", help="tasks to run (default: every ready task)")
    p.add_argument("--profile", default="standard", choices=("quick", "standard"),
                   help="quick: tiny models, short timings (minutes); standard: the trained report models")
    p.add_argument("--out", type=Path, default=Path("reports/latest"))
    p.add_argument("--cache", type=Path, default=DEFAULT_HOME / "cache", help="trained weights and exports")
    p.add_argument("--threads", type=_count, help="threads for every backend (default: all cores)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"),
                   help="where each framework trains its models (exports and inference backends run on the CPU)")
    p.set_defaults(func=_cmd_report)

    for name, func, text in (("bench", _cmd_bench, "speed and size of every backend for one task"),
                             ("export", _cmd_export, "write every artifact of both twins for one task")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--task", required=True, help=f"one of {sorted(TASKS)}")
        p.add_argument("--profile", default="standard", choices=("quick", "standard"))
        p.add_argument("--cache", type=Path, default=DEFAULT_HOME / "cache")
        p.add_argument("--threads", type=_count)
        p.set_defaults(func=func)

    p = sub.add_parser("profile", help="where a training step's time goes, per operation, in one framework")
    p.add_argument("--task", required=True, help=f"one of {sorted(TASKS)}")
    p.add_argument("--framework", required=True, help=f"one of {list(FRAMEWORKS)}")
    p.add_argument("--preset", default="standard", choices=PRESETS)
    p.add_argument("--steps", type=_count, default=10, help="profiled training steps (after two untimed ones)")
    p.add_argument("--top", type=_count, default=12, help="operation types to print")
    p.add_argument("--threads", type=_count)
    p.set_defaults(func=_cmd_profile)

    p = sub.add_parser("check", help="CI gate on a results.json: non-zero exit on any breach")
    p.add_argument("--results", type=Path, default=Path("reports/latest/results.json"))
    p.add_argument("--baseline", type=Path, help="an earlier results.json to compare p50 latencies with")
    p.add_argument("--threshold", type=_fraction, default=0.25, help="allowed p50 slow-down against the baseline")
    p.set_defaults(func=_cmd_check)

    p = sub.add_parser("history", help="earlier runs from the local store")
    p.add_argument("--store", type=Path, default=Path("reports/history.sqlite"))
    p.add_argument("--limit", type=_count, default=20)
    p.set_defaults(func=_cmd_history)

    p = sub.add_parser("guide", help="the study guide: each seed question -> paired code and report section")
    p.add_argument("--write", type=Path, help="write it here (docs/GUIDE.md) instead of printing")
    p.set_defaults(func=_cmd_guide)

    p = sub.add_parser("train", help="train one twin and print its metrics")
    p.add_argument("--task", required=True, help=f"one of {sorted(TASKS)}")
    p.add_argument("--framework", required=True, help=f"one of {list(FRAMEWORKS)}")
    p.add_argument("--preset", default="standard", choices=PRESETS)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    p.add_argument("--out", type=Path, help="where to save the canonical weights (.safetensors)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--workers", type=_count, help="data-parallel processes on this machine (torchrun and DDP, or "
                   "tf.distribute's MultiWorkerMirroredStrategy); the preset's batch is split over them")
    p.add_argument("--steps", type=_count, help="with --workers: stop after this many optimiser steps")
    p.add_argument("--nodes", type=_count, default=1, help="with --workers: machines in the job (default 1)")
    p.add_argument("--node-rank", type=int, default=0, help="this machine's index, 0 to nodes - 1 (node 0 saves)")
    p.add_argument("--master", help="HOST:PORT of node 0 (torchrun's rendezvous; TensorFlow's workers listen on "
                   "the ports after it)")
    p.add_argument("--checkpoint", type=Path, help="with --workers: a folder for the job's checkpoint; a restarted "
                   "job resumes from it")
    p.add_argument("--every", type=_count, default=50, help="with --checkpoint: steps between checkpoints")
    p.add_argument("--max-restarts", type=int, default=0, help="with --workers: restarts of the job after a worker "
                   "dies (it resumes from --checkpoint)")
    p.add_argument("--hosts", help="TensorFlow: each node's host name, comma-separated in node order (default: the "
                   "master's host for all, as on one machine)")
    p.set_defaults(func=_cmd_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    """The command line (``argv`` None: ``sys.argv``, with framework start-up logs filtered unless
    ``--verbose``); callers in this process pass ``argv`` and keep their stderr as it is."""
    if argv is None and "--verbose" not in sys.argv[1:]:  # before parsing: an option's check may import a framework
        from .logs import quiet_framework_logs

        quiet_framework_logs()
    from .data_parallel import DistributedError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SpecError as err:
        print(f"twinvision: error: {err}", file=sys.stderr)
        return 2
    except DistributedError as err:  # a job that failed: the worker's error and last lines, or the network's
        print(f"twinvision: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
