"""The distributed task's harness plug-in: data-parallel training of the classification model with torch DDP
and tf.distribute (compare/data_parallel.py launches both), measured in five studies that grade the claims of
seed answers 12, 14 and 29.

- equivalence: N workers with a share of each global batch end where one process with the whole batch ends
  (weights within 1e-5 of each tensor's largest value), and the two frameworks' jobs agree with each other at
  the training tolerances of the spec;
- scaling: training images per second for 1, 2 and 4 workers, on this host's cores;
- fault tolerance: one worker killed (SIGKILL) at a seeded random step; the job restarts from its checkpoint
  and ends with the uninterrupted job's weights; the work lost in steps and seconds;
- convergence: 1 worker against 2 at the same epochs, several seeds, with and without the learning rate
  scaled to the global batch; the verdict from the spread;
- GPU: the same job on a CUDA device where there is one, "not measurable on this host" where there is not.

Every job is a real multi-process job on loopback; its figures are cached (JSON beside its weights), so a warm
report reruns none of them.
"""

from __future__ import annotations

import functools
import math
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared.data import load, training_targets
from shared.specs import FRAMEWORKS, get_spec

from .. import data_parallel as D
from ..claims import MARGIN, NOT_MEASURABLE
from ..studies import MIXED, REFUTED, SUPPORTED, Study, StudyContext
from . import TaskPlugin, mean_sd, study_verdict

EQUIVALENCE = 1e-5  # of each tensor's max |value|: N workers against one process with the whole batch
JOB_TIMEOUT_S = 900.0


@dataclass(frozen=True)
class Plan:
    """How much each study runs, per report profile: the quick profile's jobs on the tiny preset, fewer of them."""

    steps: int                   # optimiser steps of the equivalence, scaling and fault-tolerance jobs
    workers: tuple[int, ...]     # the scaling study's worker counts
    seeds: int                   # the convergence study's seeds per configuration
    every: int                   # checkpoint interval of the fault-tolerance job, in steps


PLANS = {"quick": Plan(steps=12, workers=(1, 2), seeds=1, every=3),
         "standard": Plan(steps=24, workers=(1, 2, 4), seeds=3, every=4)}
# The convergence study trains to the end of the preset's epochs 3 x seeds times per framework: on the tiny
# preset (real digits, 1024 training images), whatever the profile; about 8 s a job on 2 cores.
CONVERGENCE_PRESET = "tiny"


def _plan(ctx: StudyContext) -> Plan:
    return PLANS.get(ctx.profile, PLANS["standard"])


def _init(ctx: StudyContext, preset: str, seed: int) -> Path:
    path = ctx.cache.path(f"init-{preset}-seed{seed}.safetensors")
    if not path.exists():
        D.initial_weights(ctx.spec.task, preset, path, seed=seed)
    return path


def _job(ctx: StudyContext, framework: str, workers: int, steps: int, global_batch: int, preset: str, *,
         seed: int | None = None, lr: float | None = None, kill_at: int | None = None, every: int = 0,
         device: str = "cpu") -> dict:
    """One data-parallel job's figures (compare.data_parallel.train), its weights in the cache; cached."""
    seed_ = get_spec(ctx.spec.task, preset).train.seed if seed is None else seed
    name = (f"job-{framework}-{preset}-{device}-w{workers}-s{steps}-b{global_batch}-seed{seed_}"
            + (f"-lr{lr:g}" if lr is not None else "") + (f"-kill{kill_at}-every{every}" if kill_at else ""))

    def run() -> dict:
        folder = ctx.cache.path(name)
        # What an interrupted run left here (a checkpoint, steps logs) must not resume this job: start clean.
        shutil.rmtree(folder, ignore_errors=True)
        out = folder / "weights.safetensors"
        what = f"{framework}, {workers} worker(s), {steps} steps of {global_batch}" + (
            f", seed {seed_}" if seed is not None else "") + (f", lr {lr:g}" if lr is not None else "") + (
            f", killing worker 1 after step {kill_at}" if kill_at else "")
        ctx.printer(f"    distributed job: {what}")
        common = dict(init=_init(ctx, preset, seed_), timeout_s=JOB_TIMEOUT_S, seed=seed, lr=lr, device=device)
        if kill_at:
            result = D.train_killing_a_worker(framework, ctx.spec.task, preset, workers, steps, global_batch, out,
                                              folder / "checkpoints", every, kill_at, **common)
        else:
            result = D.train(framework, ctx.spec.task, preset, workers, steps, global_batch, out, **common)
        return {**{k: v for k, v in result.items() if k != "weights"}, "weights": str(out)}

    return ctx.cache.json(f"{name}.json", run)[0]


def _weights(job: dict) -> dict[str, np.ndarray]:
    from shared.weights import load_file

    return load_file(job["weights"])


# ------------------------------------------------------------------------------------- equivalence


def _one_process(ctx: StudyContext, framework: str, preset: str, steps: int, global_batch: int,
                 nudge: float = 0.0) -> dict:
    """The same steps in one process through the twin's own training (the project's Trainer, not the
    distributed code), from the jobs' initial weights, each float tensor multiplied by ``1 + nudge * noise``
    (seeded normal noise) when ``nudge``; its weights and losses, cached."""
    from shared.data import full_batches
    from shared.weights import load_file, save_file

    spec = get_spec(ctx.spec.task, preset)
    name = f"one-process-{framework}-{preset}-s{steps}-b{global_batch}" + (f"-nudge{nudge:g}" if nudge else "")

    def run() -> dict:
        twin = ctx.twins[framework]
        data = load(spec)
        batches = full_batches(len(data.train), global_batch, spec.train.epochs, spec.train.seed)[:steps]
        rng = np.random.default_rng(spec.train.seed)
        init = {k: (v * (1 + nudge * rng.standard_normal(v.shape))).astype(v.dtype)
                if nudge and v.dtype == np.float32 else v
                for k, v in load_file(_init(ctx, preset, spec.train.seed)).items()}
        model = twin.bridge.import_weights(twin.task.build_model(spec), init)
        losses = twin.task.train_steps(model, spec, data.train.images, training_targets(data.train, spec), batches,
                                       spec.train)
        path = ctx.cache.path(f"{name}.safetensors")
        save_file(twin.bridge.export_weights(model), path)
        return {"weights": str(path), "losses": [float(v) for v in losses]}

    found = ctx.cache.json(f"{name}.json", run)[0]
    return {"weights": load_file(found["weights"]), "losses": found["losses"]}


def _loss_gaps(a: list[float], b: list[float]) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.abs(a - b) / np.maximum(np.abs(a), 1e-12)


def _loss_gap(a: list[float], b: list[float]) -> float:
    return float(np.max(_loss_gaps(a, b)))


# A float32 rounding's worth of change to the initial weights: how far the training dynamics alone carry two
# runs apart, the yardstick for any difference that summing in another order makes.
NUDGE = 1e-7
EQUIVALENCE_PRESET, EQUIVALENCE_STEPS = "tiny", 12


def equivalence_study(ctx: StudyContext) -> dict:
    """N workers against one process with the whole batch, per framework, on the tiny preset; the frameworks'
    jobs against each other; a one-process run from nudged initial weights as the yardstick; and, in the
    standard profile, how the standard model's runs drift apart step by step."""
    plan = _plan(ctx)
    spec = get_spec(ctx.spec.task, EQUIVALENCE_PRESET)
    batch, steps = spec.train.batch_size, EQUIVALENCE_STEPS
    rows, ok_equal = [], []
    jobs = {}

    def row(fw, workers, compared_with, a, b, bound):
        worst, key = D.worst_difference(a["weights"], b["weights"])
        loss = _loss_gap(a["losses"], b["losses"])
        rows.append({"framework": fw, "workers": workers, "compared_with": compared_with,
                     "max_weight_diff": worst, "worst_tensor": key if worst else "-", "max_loss_diff": loss,
                     "bound": bound, "ok": worst <= bound and loss <= bound})
        return rows[-1]

    for fw in FRAMEWORKS:
        reference = _one_process(ctx, fw, EQUIVALENCE_PRESET, steps, batch)
        for workers in plan.workers:
            job = jobs[fw, workers] = _job(ctx, fw, workers, steps, batch, EQUIVALENCE_PRESET)
            found = row(fw, workers, "one process, whole batch", reference, {**job, "weights": _weights(job)},
                        EQUIVALENCE)
            if workers == 2:
                ok_equal.append(found["ok"])
        control = row(fw, 1, f"one process, initial weights nudged by {NUDGE:g}", reference,
                      _one_process(ctx, fw, EQUIVALENCE_PRESET, steps, batch, NUDGE), EQUIVALENCE)
        control["ok"] = None  # the yardstick, not a check
    tol = spec.tolerances
    a, b = jobs["torch", 2], jobs["tensorflow", 2]
    cross = row("torch vs tensorflow", 2, "the other framework's 2-worker job", {**a, "weights": _weights(a)},
                {**b, "weights": _weights(b)}, max(tol.training_weights, tol.training_loss))["ok"]
    verdict = SUPPORTED if ok_equal and all(ok_equal) and cross else REFUTED
    evidence = [f"{r['framework']}, {r['workers']} worker(s) against {r['compared_with']}: weights "
                f"{r['max_weight_diff']:.2g}, losses {r['max_loss_diff']:.2g}" for r in rows]
    beyond = [r for r in rows if r["ok"] is False and r["workers"] > 2]
    if beyond:
        evidence.append(f"above {EQUIVALENCE:g} with more workers: "
                        f"{', '.join(r['framework'] + ' ' + str(r['workers']) for r in beyond)}: float32 sums in "
                        f"another order (the all-reduce adds the workers' partial sums), compared with the nudged "
                        f"run's drift")
    gate = [{"a": f"{r['framework']}, {r['workers']} workers" if r["framework"] in FRAMEWORKS else "torch",
             "b": r["compared_with"] if r["framework"] in FRAMEWORKS else "tensorflow",
             "what": "data-parallel/weights (worst tensor, relative to its max |value|)",
             "max_abs": r["max_weight_diff"], "tol": r["bound"], "ok": bool(r["ok"])}
            for r in rows if r["ok"] is not None and r["workers"] <= 2]
    plot, drift_text = _drift(ctx, plan)
    return {"title": "Equivalence: N workers against one process with the whole batch (seed answer 12)",
            "text": f"{steps} optimiser steps of {batch} images of the {EQUIVALENCE_PRESET} preset from the same "
                    f"initial weights, on the same batches: in one process (the twin's own training loop), and "
                    f"split over N worker processes on loopback (torch DistributedDataParallel over gloo; "
                    f"tf.distribute MultiWorkerMirroredStrategy with a custom loop), BatchNorm synchronized across "
                    f"the workers in both. Differences are relative to each tensor's largest value (bound "
                    f"{EQUIVALENCE:g}); the frameworks' 2-worker jobs are compared at the spec's training "
                    f"tolerances (weights {tol.training_weights:g}, losses {tol.training_loss:g}). The yardstick "
                    f"row starts one process from initial weights moved by {NUDGE:g} of themselves (a float32 "
                    f"rounding): how far the training dynamics alone carry two runs apart. {drift_text}",
            "columns": ["framework", "workers", "compared_with", "max_weight_diff", "worst_tensor", "max_loss_diff",
                        "bound", "ok"],
            "rows": rows, "plot": plot,
            "verdicts": [{"claim": "The workers' gradients are synchronised and combined, so that they train one "
                                   "model: N workers end where one process with the whole batch ends",
                          "verdict": verdict, "evidence": "; ".join(evidence)}],
            "images": {}, "parity": gate}


def _drift(ctx: StudyContext, plan: Plan) -> tuple[dict | None, str]:
    """The run's own model (the standard preset in the standard profile): per step, the relative difference of
    the training loss between the 2-worker job and one process, and between one process and its nudged twin."""
    if ctx.preset == EQUIVALENCE_PRESET:
        return None, ""
    batch = ctx.spec.train.batch_size
    series = {}
    for fw in FRAMEWORKS:
        reference = _one_process(ctx, fw, ctx.preset, plan.steps, batch)
        job = _job(ctx, fw, 2, plan.steps, batch, ctx.preset)
        series[f"{fw}: 2 workers vs one process"] = _loss_gaps(reference["losses"], job["losses"])
        if fw == "torch":
            nudged = _one_process(ctx, fw, ctx.preset, plan.steps, batch, NUDGE)
            series[f"{fw}: one process, nudged by {NUDGE:g}"] = _loss_gaps(reference["losses"], nudged["losses"])
    log = {name: [None if v <= 0 else float(np.log10(v)) for v in values] for name, values in series.items()}
    last = {name: float(values[-1]) for name, values in series.items()}
    text = (f"The {ctx.preset} model (the plot) at its rate {ctx.spec.train.lr:g}: in its first steps the training "
            f"dynamics amplify any difference, so after {plan.steps} steps the 2-worker job and one process differ "
            f"by {', '.join(f'{v:.2g}' for k, v in last.items() if 'workers' in k)} in "
            f"loss, and so does one process from initial weights nudged by {NUDGE:g} "
            f"({next(v for k, v in last.items() if 'nudged' in k):.2g}): the drift is the model's, not the "
            f"distribution's, which is why the bound is checked on the {EQUIVALENCE_PRESET} preset.")
    return ({"kind": "lines", "title": f"Loss drift per step, {ctx.preset} model", "xlabel": "step",
             "ylabel": "log10 relative loss difference", "labels": [str(i + 1) for i in range(plan.steps)],
             "series": log}, text)


# ------------------------------------------------------------------------------------- scaling


def scaling_study(ctx: StudyContext) -> dict:
    """Training images per second for each worker count, per framework (the equivalence study's jobs)."""
    plan, spec = _plan(ctx), ctx.spec
    batch, cores = spec.train.batch_size, os.cpu_count() or 1
    rows = []
    for fw in FRAMEWORKS:
        base = None
        for workers in plan.workers:
            if batch % workers:
                continue
            job = _job(ctx, fw, workers, plan.steps, batch, ctx.preset)
            rate = job["images_per_s"]
            base = base or rate
            rows.append({"framework": fw, "device": "cpu", "workers": workers,
                         "threads_per_worker": max(1, cores // workers), "images_per_s": rate,
                         "speedup": rate / base if rate and base else None,
                         "first_step_s": job["first_step_seconds"], "job_s": job["job_seconds"]})
    rates = {fw: {r["workers"]: r["images_per_s"] for r in rows if r["framework"] == fw} for fw in FRAMEWORKS}

    def shown(fw: str) -> str:
        return ", ".join(f"{w} worker{'s' if w > 1 else ''} {v:.0f}" for w, v in rates[fw].items() if v)

    faster = [rates[fw].get(2, 0) > (1 + MARGIN) * rates[fw].get(1, math.inf) for fw in FRAMEWORKS]
    slower = [rates[fw].get(2, math.inf) < (1 - MARGIN) * rates[fw].get(1, 0) for fw in FRAMEWORKS]
    counts = sorted(plan.workers)
    growing = [all(rates[fw].get(b, 0) > rates[fw].get(a, math.inf) for a, b in zip(counts, counts[1:]))
               for fw in FRAMEWORKS]
    host = (f"on this host's {cores} CPU cores the workers share the cores (each gets {cores} // N threads) and "
            f"every step adds an all-reduce of the gradients and of each BatchNorm's statistics")
    return {"title": "Scaling: training images per second against the number of workers (seed answers 12 and 29)",
            "text": f"The equivalence study's jobs ({plan.steps} steps of {batch} images, split over the workers), "
                    f"timed after each job's first step (TensorFlow traces its step function there). All workers "
                    f"run on this one host: {host}. GPU figures: the GPU study.",
            "columns": ["framework", "device", "workers", "threads_per_worker", "images_per_s", "speedup",
                        "first_step_s", "job_s"],
            "rows": rows,
            "plot": {"kind": "lines", "title": "Training throughput against workers", "ylabel": "images per second",
                     "xlabel": "workers on this host",
                     "labels": [str(w) for w in counts],
                     "series": {fw: [rates[fw].get(w) for w in counts] for fw in FRAMEWORKS}},
            "verdicts": [
                {"claim": "Spreading training over several workers shortens it",
                 "verdict": SUPPORTED if all(faster) else REFUTED if all(slower) else MIXED,
                 "evidence": f"images per second, {'; '.join(f'{fw}: {shown(fw)}' for fw in FRAMEWORKS)} "
                             f"(counts beyond {MARGIN:.0%}); {host}: on one machine with few cores the workers "
                             f"compete for the same cores, and the speed-up needs cores (or GPUs, or machines) "
                             f"per worker"},
                {"claim": "Adding workers scales training up",
                 "verdict": SUPPORTED if all(growing) else REFUTED if not any(growing) else MIXED,
                 "evidence": f"throughput {'rises' if all(growing) else 'does not rise'} with every added worker "
                             f"({', '.join(map(str, counts))}); several machines were not measured: a test runs the "
                             f"README's two-node commands on loopback, for equivalence, not speed"}],
            "images": {}}


# ------------------------------------------------------------------------------------- fault tolerance


def fault_study(ctx: StudyContext) -> dict:
    """A worker killed mid-training; the job resumes from its checkpoint to the uninterrupted job's weights."""
    plan, spec = _plan(ctx), ctx.spec
    batch = spec.train.batch_size
    rows = []
    for i, fw in enumerate(FRAMEWORKS):
        kill_at = random.Random(spec.train.seed * 100 + i).randint(plan.every + 1, plan.steps - 2)
        clean = _job(ctx, fw, 2, plan.steps, batch, ctx.preset)
        killed = _job(ctx, fw, 2, plan.steps, batch, ctx.preset, kill_at=kill_at, every=plan.every)
        worst, key = D.worst_difference(_weights(clean), _weights(killed))
        resume = (killed.get("resumes") or [{}])[-1]
        rows.append({"framework": fw, "workers": 2, "steps": plan.steps, "checkpoint_every": plan.every,
                     "killed_after_step": killed["killed_at"], "resumed_from_step": resume.get("from_step"),
                     "lost_steps": resume.get("lost_steps"), "lost_s": resume.get("lost_seconds"),
                     "restart_s": killed["job_seconds"] - clean["job_seconds"],
                     "max_weight_diff": worst, "worst_tensor": key if worst else "-", "ok": worst <= EQUIVALENCE})
    same = all(r["ok"] for r in rows)
    evidence = "; ".join(f"{r['framework']}: killed after step {r['killed_after_step']}, resumed from step "
                         f"{r['resumed_from_step']}, {r['lost_steps']} step(s) redone, the job took "
                         f"{r['restart_s']:+.1f} s longer, final weights within {r['max_weight_diff']:.2g}"
                         for r in rows)
    return {"title": "Fault tolerance: a worker killed mid-training (seed answers 12 and 29)",
            "text": f"Two workers train {plan.steps} steps with a checkpoint every {plan.every} (canonical "
                    f"safetensors, written atomically, no pickle); worker 1 gets SIGKILL after a seeded random "
                    f"step. PyTorch: torchrun's agent restarts every worker (--max-restarts 1); TensorFlow: this "
                    f"project's launcher restarts the job (MultiWorkerMirroredStrategy has no agent). Both resume "
                    f"from the last checkpoint on the same batches. Compared with the uninterrupted job.",
            "columns": ["framework", "workers", "steps", "checkpoint_every", "killed_after_step", "resumed_from_step",
                        "lost_steps", "lost_s", "restart_s", "max_weight_diff", "worst_tensor", "ok"],
            "rows": rows, "plot": None,
            "verdicts": [{"claim": "When a worker fails, training goes on without losing the progress made so far",
                          "verdict": MIXED if same else REFUTED,
                          "evidence": f"{evidence}. The progress up to the last checkpoint is kept and the job ends "
                                      f"where it would have, but neither engine carries on with the surviving "
                                      f"workers: every worker restarts, and the steps since the checkpoint are "
                                      f"redone"}],
            "images": {}}


# ------------------------------------------------------------------------------------- convergence


def convergence_study(ctx: StudyContext) -> dict:
    """Same epochs, 1 worker against 2 (global batch doubled), the learning rate as is or doubled; test
    accuracy and final training loss over several seeds, per framework."""
    from shared.data import full_batches

    plan = _plan(ctx)
    spec = get_spec(ctx.spec.task, CONVERGENCE_PRESET)
    data = load(spec)
    batch, lr, epochs = spec.train.batch_size, spec.train.lr, spec.train.epochs
    configs = (("1 worker", 1, batch, None), ("2 workers, same rate", 2, 2 * batch, None),
               ("2 workers, rate x2", 2, 2 * batch, 2 * lr))
    seeds = [spec.train.seed + k for k in range(plan.seeds)]
    rows, accuracy = [], {}
    for fw in FRAMEWORKS:
        twin = ctx.twins[fw]
        for label, workers, global_batch, rate in configs:
            steps = len(full_batches(len(data.train), global_batch, epochs, spec.train.seed))
            found = []
            for seed in seeds:
                job = _job(ctx, fw, workers, steps, global_batch, CONVERGENCE_PRESET, seed=seed, lr=rate)

                def evaluate(job=job) -> float:  # the framework's own twin on the held-out split
                    model = twin.bridge.import_weights(twin.task.build_model(spec), _weights(job))
                    return float(twin.task.evaluate(model, data.test, spec)["accuracy"])

                accuracy_of_job = ctx.cache.json(f"{Path(job['weights']).parent.name}-accuracy.json", evaluate)[0]
                per_epoch = max(1, steps // epochs)
                found.append((accuracy_of_job, float(np.mean(job["losses"][-per_epoch:]))))
            acc_mean, acc_sd = mean_sd([a for a, _ in found])
            loss_mean, loss_sd = mean_sd([v for _, v in found])
            accuracy[fw, label] = [a for a, _ in found]
            rows.append({"framework": fw, "config": label, "workers": workers, "global_batch": global_batch,
                         "lr": rate or lr, "steps": steps, "seeds": len(seeds), "test_accuracy": acc_mean,
                         "accuracy_sd": acc_sd, "accuracy_min": min(a for a, _ in found),
                         "accuracy_max": max(a for a, _ in found), "last_epoch_loss": loss_mean,
                         "loss_sd": loss_sd})
    return {"title": "Convergence: one worker against two at the same epochs (seed answer 29)",
            "text": f"The {CONVERGENCE_PRESET} preset (real digits, {len(data.train)} training images, {epochs} "
                    f"epochs): 1 worker with batches of {batch} at rate {lr:g}, against 2 workers with {batch} "
                    f"each (a global batch of {2 * batch}, so half the steps), at the same rate and at twice it "
                    f"(the linear scaling rule). Each configuration from {len(seeds)} seed(s) (initial weights "
                    f"and batch order); test accuracy on the held-out split, mean and sample standard deviation.",
            "columns": ["framework", "config", "workers", "global_batch", "lr", "steps", "seeds", "test_accuracy",
                        "accuracy_sd", "accuracy_min", "accuracy_max", "last_epoch_loss", "loss_sd"],
            "rows": rows,
            "plot": {"kind": "bars", "title": "Test accuracy by configuration (mean over seeds)",
                     "ylabel": "test accuracy", "xlabel": "configuration", "labels": [c[0] for c in configs],
                     "series": {fw: [np.mean(accuracy[fw, c[0]]) for c in configs] for fw in FRAMEWORKS}},
            "verdicts": [_convergence_verdict(accuracy, [c[0] for c in configs], len(seeds))],
            "images": {}}


def _convergence_verdict(accuracy: dict, labels: list[str], seeds: int) -> dict:
    """Each 2-worker configuration's mean accuracy against 1 worker's, counted only beyond twice the standard
    error of the difference (from the seeds' spread)."""
    claim = "Distributed training improves convergence and helps avoid poor local minima"
    if seeds < 2:
        return {"claim": claim, "verdict": NOT_MEASURABLE,
                "evidence": f"one seed per configuration (quick profile): no spread to judge a difference by; the "
                            f"standard profile runs {PLANS['standard'].seeds}"}
    base, lines, better, worse = labels[0], [], [], []
    for fw in FRAMEWORKS:
        a = np.asarray(accuracy[fw, base])
        for label in labels[1:]:
            b = np.asarray(accuracy[fw, label])
            gain = float(b.mean() - a.mean())
            noise = 2 * math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
            (better if gain > noise else worse if gain < -noise else []).append(f"{fw} {label}")
            lines.append(f"{fw} {label}: {gain:+.3f} against 1 worker (noise {noise:.3f})")
    verdict = SUPPORTED if better and not worse else REFUTED if not better else MIXED
    return {"claim": claim, "verdict": verdict,
            "evidence": "; ".join(lines) + ". Synchronous data parallelism computes large-batch SGD (the "
                        "equivalence study): it explores no more of the landscape than one process with the whole "
                        "batch, and at the same epochs it takes fewer steps; the rate decides the rest"}


# ------------------------------------------------------------------------------------- GPU


def gpu_study(ctx: StudyContext) -> dict:
    """The scaling study's 1-worker job on a CUDA device against the CPU, where there is one."""
    import torch

    plan, batch = _plan(ctx), ctx.spec.train.batch_size
    columns = ["framework", "device", "images_per_s", "speedup_over_cpu", "note"]
    if not torch.cuda.is_available():
        rows = [{"framework": fw, "device": "cuda", "images_per_s": None, "speedup_over_cpu": None,
                 "note": "not measurable on this host: no CUDA GPU"} for fw in FRAMEWORKS]
        verdicts = [{"claim": "GPUs train CNNs much faster than CPUs", "verdict": NOT_MEASURABLE,
                     "evidence": "no CUDA GPU on this host (torch.cuda.is_available() is False); the same jobs run "
                                 "with --device cuda where there is one"}]
    else:
        rows = []
        for fw in FRAMEWORKS:
            cpu = _job(ctx, fw, 1, plan.steps, batch, ctx.preset)
            gpu = _job(ctx, fw, 1, plan.steps, batch, ctx.preset, device="cuda")
            rows.append({"framework": fw, "device": torch.cuda.get_device_name(0), "images_per_s": gpu["images_per_s"],
                         "speedup_over_cpu": gpu["images_per_s"] / cpu["images_per_s"],
                         "note": f"CPU: {cpu['images_per_s']:.0f} images/s"})
        fast = [r["speedup_over_cpu"] > 1 + MARGIN for r in rows]
        verdicts = [{"claim": "GPUs train CNNs much faster than CPUs",
                     "verdict": SUPPORTED if all(fast) else REFUTED if not any(fast) else MIXED,
                     "evidence": "; ".join(f"{r['framework']}: {r['speedup_over_cpu']:.1f}x the CPU's images/s"
                                           for r in rows)}]
    return {"title": "GPU: the same training job on a CUDA device (seed answer 14)",
            "text": f"The scaling study's one-worker job ({plan.steps} steps of {batch} images) with --device cuda.",
            "columns": columns, "rows": rows, "plot": None, "verdicts": verdicts, "images": {}}


# ------------------------------------------------------------------------------------- mixed precision


def precision_study(ctx: StudyContext) -> dict:
    """bfloat16 and float16 (torch autocast; Keras mixed policies) against float32 and between the twins on a
    trained model, its accuracy at each precision, and the run's model timed at each precision."""
    from shared.data import full_batches
    from shared.metrics import evaluate_outputs, primary_metric
    from shared.precision import PRECISIONS

    from .. import speed as S
    from ..parity import mixed_precision_parity

    spec = get_spec(ctx.spec.task, CONVERGENCE_PRESET)
    data = load(spec)
    steps = len(full_batches(len(data.train), spec.train.batch_size, spec.train.epochs, spec.train.seed))
    # the convergence study's one-worker torch model (seed 0): a trained model, so activations are realistic
    trained = _job(ctx, "torch", 1, steps, spec.train.batch_size, CONVERGENCE_PRESET, seed=spec.train.seed)
    entries, outputs = mixed_precision_parity(spec, ctx.twins, _weights(trained), data.test.images,
                                              training_targets(data.test, spec))
    metric = primary_metric(ctx.spec.task)
    budget = S.QUICK if ctx.profile == "quick" else S.STANDARD
    images = ctx.data.test.images[:32]  # the run's data (the harness loaded it once)
    rows, timings = [], {}
    for fw, twin in ctx.twins.items():
        for precision in PRECISIONS:
            model = twin.precision.build_model(twin.task, ctx.spec, precision)
            timings[fw, precision] = S.time_call(
                lambda x, model=model, precision=precision: twin.precision.forward(model, x, ctx.spec, precision),
                images, budget)["p50_ms"]
    for (fw, precision), out in outputs.items():
        found = {e["what"].split("/")[2]: e for e in entries
                 if e["a"] == f"{fw}-float32" and e["b"] == f"{fw}-{precision}"}

        def rel(what: str, found=found) -> float | None:  # max |difference| relative to the float32 scale
            e = found.get(what)
            return e["max_abs"] * _tolerance(spec, precision, what) / e["tol"] if e and e["tol"] else None

        rows.append({"framework": fw, "precision": precision,
                     metric: evaluate_outputs(spec, out, data.test)[metric],
                     "outputs_vs_float32": rel("outputs") if precision != "float32" else 0.0,
                     "loss_vs_float32": rel("loss") if precision != "float32" else 0.0,
                     "gradients_vs_float32": rel("gradients") if precision != "float32" else 0.0,
                     "ok": all(e["ok"] for e in found.values()) if found else None,
                     "p50_ms_b32": timings[fw, precision],
                     "speedup": timings[fw, "float32"] / timings[fw, precision]})
    for precision in PRECISIONS[1:]:
        cross = [e for e in entries if e["a"] == f"torch-{precision}" and e["b"] == f"tensorflow-{precision}"]
        by = {e["what"].split("/")[2]: e for e in cross}
        rows.append({"framework": "torch vs tensorflow", "precision": precision, metric: None,
                     **{f"{w}_vs_float32": by[w]["max_abs"] * _tolerance(spec, precision, w) / by[w]["tol"]
                        for w in ("outputs", "loss", "gradients") if by.get(w) and by[w]["tol"]},
                     "ok": all(e["ok"] for e in cross), "p50_ms_b32": None, "speedup": None})
    tol = spec.tolerances
    return {"title": "Mixed precision: bfloat16 and float16 against float32, and speed (seed answer 14)",
            "text": f"The convergence study's trained one-worker model ({CONVERGENCE_PRESET} preset) in both twins "
                    f"at each precision (PyTorch: torch.autocast; TensorFlow: Keras' mixed_bfloat16 and "
                    f"mixed_float16 policies; weights stay float32 in both), on the {len(data.test)} held-out "
                    f"images: outputs, training loss and gradients against the same twin at float32 (the 'torch vs "
                    f"tensorflow' rows: the twins against each other at one precision), relative to the float32 "
                    f"scale. Tolerances: {tol.mixed_roundoffs:g} unit roundoffs of the format for outputs and loss "
                    f"({tol.mixed_roundoffs * 2 ** -8:.3g} bfloat16, {tol.mixed_roundoffs * 2 ** -11:.2g} float16), "
                    f"gradients {tol.bfloat16_gradients:g} and {tol.float16_gradients:g} of the largest one "
                    f"(measured, docs/DEPENDENCIES.md). Speed: the run's model ({ctx.preset} preset) on 32 images "
                    f"per call through each twin's precision path (TensorFlow's is an eager call; its compiled "
                    f"backends are timed in the classification section), the report's timing rule: a ratio "
                    f"between precisions, not a comparison of the frameworks. On a CPU the low formats save memory traffic at best: "
                    f"bfloat16 needs AVX-512 BF16 or AMX for native arithmetic, and float16 arithmetic falls back "
                    f"to slower code on most CPUs; their speed-up belongs to GPUs (the GPU study).",
            "columns": ["framework", "precision", metric, "outputs_vs_float32", "loss_vs_float32",
                        "gradients_vs_float32", "ok", "p50_ms_b32", "speedup"],
            "rows": rows,
            "plot": {"kind": "bars", "title": "Inference time per precision, batch 32", "ylabel": "p50 ms per call",
                     "xlabel": "precision", "labels": list(PRECISIONS),
                     "series": {fw: [timings[fw, p] for p in PRECISIONS] for fw in ctx.twins}},
            "verdicts": [], "images": {}, "parity": entries}


def _tolerance(spec, precision: str, what: str) -> float:
    from shared.precision import tolerance

    return tolerance(spec.tolerances, precision, "gradients" if what == "gradients" else "outputs")


# ------------------------------------------------------------------------------------- claims


def _not_measured(reason: str):
    return lambda results, code, env: (NOT_MEASURABLE, [reason])


_study_verdict = functools.partial(study_verdict, "distributed")  # a claim graded by one of this task's studies


PLUGIN = TaskPlugin(
    studies=(Study(equivalence_study, "equivalence", (12,)),
             Study(scaling_study, "scaling", (12, 29)),
             Study(fault_study, "fault-tolerance", (12, 29)),
             Study(convergence_study, "convergence", (29,)),
             Study(gpu_study, "gpu", (14,)),
             Study(precision_study, "mixed-precision", (14,))),
    claims=(
        ("distributed-synchronised", "12", "Gradients from the workers are synchronised and aggregated into one "
                                           "model update", _study_verdict("equivalence")),
        ("distributed-faster", "12, 29", "Distributed training cuts training time", _study_verdict("scaling")),
        ("distributed-scales", "12, 29", "Adding machines or GPUs scales training up", _study_verdict("scaling", 1)),
        ("distributed-capacity", "12", "Distributed training fits models too large for one device",
         _not_measured("both engines here are data-parallel: every worker holds the whole model, so no model is "
                       "split over devices (model or pipeline parallelism, sharded parameters) in this run")),
        ("distributed-fault-tolerance", "12, 29", "A failing machine does not cost the training its progress",
         _study_verdict("fault-tolerance")),
        ("distributed-convergence", "29", "Distributed training converges better and avoids local minima",
         _study_verdict("convergence")),
        ("gpu-training-faster", "14", "GPUs make CNN training much faster than CPUs", _study_verdict("gpu")),
        ("gpu-operations-limit", "14", "Some operations (certain pooling layers) limit the GPU's speed-up",
         _not_measured("needs per-operation GPU profiles; no GPU on the hosts this report was designed for, and "
                       "the GPU study times whole training steps only")),
    ),
)

__all__ = ["PLUGIN", "PLANS", "convergence_study", "equivalence_study", "fault_study", "gpu_study",
           "precision_study", "scaling_study"]
