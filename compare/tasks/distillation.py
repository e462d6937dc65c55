"""The distillation task's harness plug-in (seed answers 10 and 27): the teacher's logits attached to the data,
three studies (teacher against student, distilled against scratch over seeds, the temperature and alpha sweep)
and the claims they grade. The distilled student is the task's main model, so the harness's own stages already
take it through every export, int8 path and timing; the quantization claim reads those rows."""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from dataclasses import dataclass

import numpy as np

from shared.data.distillation import with_teacher
from shared.specs import FRAMEWORKS, get_spec
from shared.specs.distillation import DistillationLossSpec

from .. import backends as B
from .. import speed as S
from ..studies import MIXED, REFUTED, SUPPORTED, Study, StudyContext
from . import TaskPlugin, mean_sd, study_verdict
from .classification import REFERENCE, trained_model

NOT_MEASURABLE, TIE = "not measurable here", "tie"


@dataclass(frozen=True)
class Plan:
    """seeds: per framework, how many seeds train the student from scratch and distilled (the spread the verdicts
    weigh gaps against); temperatures and alphas: the sweep's grid (one seed each)."""

    seeds: int
    temperatures: tuple[float, ...]
    alphas: tuple[float, ...]


PLANS = {"quick": Plan(seeds=2, temperatures=(1.0, 4.0), alphas=(0.5,)),
         "standard": Plan(seeds=3, temperatures=(1.0, 4.0, 8.0), alphas=(0.1, 0.5))}
SCRATCH_ALPHA = 1.0  # alpha = 1: the loss is the hard-label cross-entropy alone (the soft term weighs 0)


# ------------------------------------------------------------------------------------- the teacher


def attach_teacher(spec, data, preset: str, cache_of, printer=print):
    """``data`` with the teacher's logits (``TaskPlugin.prepare_data``). For ``spec.teacher == "classification"``
    the teacher is the classification run's trained reference model at ``preset`` (compare/tasks/
    classification.py: trained_model, from that run's cache or trained there now); both students learn from this
    one teacher's logits. A ridge teacher's came with the data."""
    if spec.teacher != "classification":
        return data
    from ..frameworks import load_twin

    teacher_spec = get_spec("classification", preset)
    if teacher_spec.data != spec.data or teacher_spec.model.num_classes != spec.model.num_classes:
        raise ValueError(f"distillation ({preset}): the teacher is the classification model of the same preset, "
                         f"which must see the same data; received {teacher_spec.data} against {spec.data}")
    teacher, path = trained_model(preset, cache_of, lambda line: printer(line.replace("    ", "    teacher: ", 1)))
    predict = load_twin(REFERENCE, "classification").task.predict
    logits = [predict(teacher, split.images)["logits"] for split in (data.train, data.test)]
    return with_teacher(data, *logits, teacher=f"the classification model ({REFERENCE}-trained)", weights=str(path))


def _teacher(ctx: StudyContext, framework: str):
    """The teacher network in ``framework`` (the reference's trained weights through the canonical layout), its
    spec, or None for a teacher without a network (ridge)."""
    if not ctx.data.teacher_weights:
        return None, None
    from ..frameworks import load_twin

    spec = get_spec("classification", ctx.preset)
    twin = load_twin(framework, "classification")
    return twin.bridge.load_weights(twin.task.build_model(spec), ctx.data.teacher_weights), spec


# ------------------------------------------------------------------------------------- students


def _plan(ctx: StudyContext) -> Plan:
    return PLANS.get(ctx.profile, PLANS["standard"])


def _student_spec(spec, temperature: float, alpha: float, seed: int):
    return dataclasses.replace(spec, distill=DistillationLossSpec(alpha=alpha, temperature=temperature),
                               train=dataclasses.replace(spec.train, seed=seed))


def _student(ctx: StudyContext, framework: str, temperature: float, alpha: float, seed: int) -> dict:
    """A student trained in ``framework`` at (T, alpha) from seed ``seed``'s initialisation and batch order
    (cached): test accuracy, agreement with the teacher, training seconds. The run's own configuration and seed
    is the model the train stage already trained."""
    spec = _student_spec(ctx.spec, temperature, alpha, seed)
    twin = ctx.twins[framework]

    def make() -> dict:
        if spec == ctx.spec and framework in ctx.models:
            model, seconds = ctx.models[framework], None
        else:
            model, history = twin.task.train(spec, ctx.data, model=ctx.initial_model(framework, spec),
                                             progress=False)
            seconds = history[-1]["seconds"]
        metrics = twin.task.evaluate(model, ctx.data.test, spec)
        return {"accuracy": metrics["accuracy"], "teacher_agreement": metrics.get("teacher_agreement"),
                "seconds": seconds}

    name = f"student-{framework}-T{temperature:g}-alpha{alpha:g}-seed{seed}.json"
    found, cached = ctx.cache.json(name, make)
    if not cached:
        ctx.printer(f"    {framework} student T={temperature:g} alpha={alpha:g} seed {seed}: accuracy "
                    f"{found['accuracy']:.4f}")
    return found


def _gap(a: list[float], b: list[float]) -> tuple[float, float]:
    """mean(b) - mean(a) and the noise it is judged against: twice the standard error of that difference."""
    noise = 2 * math.sqrt(np.var(a, ddof=1) / len(a) + np.var(b, ddof=1) / len(b)) if min(len(a), len(b)) > 1 \
        else float("nan")
    return float(np.mean(b) - np.mean(a)), noise


def _teacher_accuracy(ctx: StudyContext) -> float:
    return float((ctx.data.test.teacher_logits.argmax(-1) == ctx.data.test.labels).mean())


# ------------------------------------------------------------------------------------- studies


def seeds_study(ctx: StudyContext) -> dict:
    """The student trained from scratch against the same student distilled, over several seeds, per framework."""
    plan, distill = _plan(ctx), ctx.spec.distill
    seeds = [ctx.spec.train.seed + k for k in range(plan.seeds)]
    configs = (("from scratch", SCRATCH_ALPHA), (f"distilled (T={distill.temperature:g}, alpha={distill.alpha:g})",
                                                  distill.alpha))
    rows, accuracy = [], {}
    for fw in FRAMEWORKS:
        for label, alpha in configs:
            runs = [_student(ctx, fw, distill.temperature, alpha, seed) for seed in seeds]
            accuracy[fw, label] = [r["accuracy"] for r in runs]
            mean, sd = mean_sd(accuracy[fw, label])
            rows.append({"framework": fw, "student": label, "seeds": len(seeds), "test_accuracy": mean,
                         "accuracy_sd": sd, "accuracy_min": min(accuracy[fw, label]),
                         "accuracy_max": max(accuracy[fw, label]),
                         "teacher_agreement": float(np.mean([r["teacher_agreement"] for r in runs]))})
    teacher = _teacher_accuracy(ctx)
    lines, verdicts = [], []
    for fw in FRAMEWORKS:
        gain, noise = _gap(accuracy[fw, configs[0][0]], accuracy[fw, configs[1][0]])
        verdicts.append("improves" if gain > noise else "loses" if gain < -noise else "keeps")
        lines.append(f"{fw}: distilled {np.mean(accuracy[fw, configs[1][0]]):.3f} against scratch "
                     f"{np.mean(accuracy[fw, configs[0][0]]):.3f} ({gain:+.3f}, noise {noise:.3f}: {verdicts[-1]})")
    verdict = REFUTED if all(v == "loses" for v in verdicts) else MIXED if "loses" in verdicts else SUPPORTED
    return {"title": "Distilled student against the same student trained from scratch (seed answers 10, 27)",
            "text": f"The student ({ctx.spec.model.widths} channels) trained with the task's recipe from "
                    f"{len(seeds)} seeds (initial weights and batch order), once on the labels alone (alpha = 1) "
                    f"and once distilled from {ctx.data.teacher} (test accuracy {teacher:.3f}); test accuracy on "
                    f"the held-out split, mean and sample standard deviation. A gap counts beyond twice its "
                    f"standard error.",
            "columns": ["framework", "student", "seeds", "test_accuracy", "accuracy_sd", "accuracy_min",
                        "accuracy_max", "teacher_agreement"],
            "rows": rows,
            "plot": {"kind": "bars", "title": "Student test accuracy, mean over seeds (bars: one sd)",
                     "ylabel": "test accuracy", "xlabel": "student", "labels": [c[0] for c in configs],
                     "series": {fw: [float(np.mean(accuracy[fw, c[0]])) for c in configs] for fw in FRAMEWORKS},
                     "errors": {fw: [mean_sd(accuracy[fw, c[0]])[1] for c in configs] for fw in FRAMEWORKS}},
            "verdicts": [{"claim": "A distilled student keeps or improves the accuracy of the same network "
                                   "trained alone", "verdict": verdict,
                          "evidence": "; ".join(lines) + f"; the teacher scores {teacher:.3f}"}],
            "images": {}}


def sweep_study(ctx: StudyContext) -> dict:
    """Test accuracy of the distilled student over the temperature and alpha grid, per framework (one seed),
    against the seeds study's spread."""
    plan, seed = _plan(ctx), ctx.spec.train.seed
    rows, found = [], {}
    for fw in FRAMEWORKS:
        scratch = _student(ctx, fw, ctx.spec.distill.temperature, SCRATCH_ALPHA, seed)["accuracy"]
        for alpha in plan.alphas:
            for t in plan.temperatures:
                found[fw, alpha, t] = _student(ctx, fw, t, alpha, seed)["accuracy"]
                rows.append({"framework": fw, "alpha": alpha, "temperature": t, "test_accuracy": found[fw, alpha, t],
                             "against_scratch": found[fw, alpha, t] - scratch})
    # One seed per cell: a difference of two cells is judged against the seeds study's spread of one cell.
    spread = {fw: mean_sd([_student(ctx, fw, ctx.spec.distill.temperature, ctx.spec.distill.alpha,
                                     seed + k)["accuracy"] for k in range(plan.seeds)])[1] for fw in FRAMEWORKS}
    lines, outcomes = [], []
    for fw in FRAMEWORKS:
        noise, wins, losses = 2 * math.sqrt(2) * spread[fw], 0, 0
        for alpha in plan.alphas:
            best_t = max((t for t in plan.temperatures if t > 1), key=lambda t: found[fw, alpha, t])
            gain = found[fw, alpha, best_t] - found[fw, alpha, 1.0]
            wins, losses = wins + (gain > noise), losses + (gain < -noise)
            lines.append(f"{fw} alpha={alpha:g}: T={best_t:g} {found[fw, alpha, best_t]:.3f} against T=1 "
                         f"{found[fw, alpha, 1.0]:.3f} ({gain:+.3f}, noise {noise:.3f})")
        outcomes.append(SUPPORTED if wins and not losses else REFUTED if losses and not wins else
                        MIXED if wins else TIE)
    # Supported only where every framework's runs say so: one framework's win beside the other's tie is mixed.
    verdict = outcomes[0] if len(set(outcomes)) == 1 else MIXED
    best = max(found, key=found.get)
    return {"title": "Temperature and alpha (seed answer 10)",
            "text": f"The distilled student at every (T, alpha) of the grid, seed {seed}, per framework; the "
                    f"column against_scratch is the gain over the same seed trained from scratch. One seed per "
                    f"cell: differences are judged against the seeds study's spread (twice the sd of a "
                    f"difference of two single runs). Best cell: {best[0]} T={best[2]:g} alpha={best[1]:g} "
                    f"({found[best]:.3f}).",
            "columns": ["framework", "alpha", "temperature", "test_accuracy", "against_scratch"],
            "rows": rows,
            "plot": {"kind": "lines", "title": "Distilled student test accuracy against temperature",
                     "ylabel": "test accuracy", "xlabel": "temperature T",
                     "labels": [f"{t:g}" for t in plan.temperatures],
                     "series": {f"{fw} alpha={alpha:g}": [found[fw, alpha, t] for t in plan.temperatures]
                                for fw in FRAMEWORKS for alpha in plan.alphas}},
            "verdicts": [{"claim": "Softened outputs (T > 1) carry more of the teacher's knowledge than T = 1",
                          "verdict": verdict if spread[FRAMEWORKS[0]] or spread[FRAMEWORKS[1]] else NOT_MEASURABLE,
                          "evidence": "; ".join(lines)}],
            "images": {}}


def _latency(runner, images: np.ndarray, budget) -> dict:
    timing = S.time_call(runner.run, runner.to_input(images), budget)
    return {"p50_ms": timing["p50_ms"], "cv": timing["cv"]}


def teacher_student_study(ctx: StudyContext) -> dict:
    """Teacher, student from scratch and distilled student: parameters, bytes, accuracy and latency (batch 1 and
    32, each framework's graph runner, the harness's timing rule) per framework."""
    budget = S.QUICK if ctx.profile == "quick" else S.STANDARD
    columns = ["framework", "model", "parameters", "bytes", "test_accuracy", "p50_ms_b1", "cv_b1", "p50_ms_b32",
               "cv_b32"]
    student_bytes = ctx.cache.path(f"trained-{REFERENCE}.safetensors")
    rows, timing = [], {}
    for fw in FRAMEWORKS:
        teacher, teacher_spec = _teacher(ctx, fw)
        scratch = _student(ctx, fw, ctx.spec.distill.temperature, SCRATCH_ALPHA, ctx.spec.train.seed)
        entries = [("distilled student", ctx.models.get(fw), ctx.spec, student_bytes,
                    _student(ctx, fw, ctx.spec.distill.temperature, ctx.spec.distill.alpha,
                             ctx.spec.train.seed)["accuracy"]),
                   ("student from scratch", None, ctx.spec, student_bytes, scratch["accuracy"])]
        if teacher is not None:
            entries.insert(0, ("teacher", teacher, teacher_spec, ctx.data.teacher_weights, _teacher_accuracy(ctx)))
        for label, model, spec, path, accuracy in entries:
            shape_of = ctx.twins[fw].task.build_model(spec) if model is None else model
            row = {"framework": fw, "model": label, "parameters": _parameters(ctx.twins[fw], shape_of),
                   "bytes": os.path.getsize(path) if path and os.path.exists(path) else None,
                   "test_accuracy": accuracy, "p50_ms_b1": None, "cv_b1": None, "p50_ms_b32": None, "cv_b32": None}
            if model is not None:  # the scratch student has the distilled one's shape and cost
                runner = B.make_runner(fw, {fw: model}, {}, spec, 1)
                for batch in (1, 32):
                    images = np.resize(ctx.data.test.images[:batch], (batch, *spec.input_shape)).astype(np.float32)
                    found = _latency(runner, images, budget)
                    row[f"p50_ms_b{batch}"], row[f"cv_b{batch}"] = found["p50_ms"], found["cv"]
                    timing[fw, label, batch] = found
            rows.append(row)
    return {"title": "Teacher and student: size, accuracy and latency (seed answers 10, 27)",
            "text": f"The teacher ({ctx.data.teacher}), the student trained from scratch and the distilled student "
                    f"(seed {ctx.spec.train.seed}). Parameters exclude BatchNorm's running statistics; bytes are "
                    f"the canonical safetensors file; latency is each framework's graph runner (torch eager in "
                    f"inference mode, tf.function) on one thread per the report's timing rule, median and "
                    f"coefficient of variation. The scratch student has the distilled one's size and cost.",
            "columns": columns, "rows": rows,
            "plot": {"kind": "bars", "title": "Latency at batch 32 (ms, lower is faster)", "ylabel": "p50 ms",
                     "xlabel": "model", "labels": [r["model"] for r in rows if r["framework"] == FRAMEWORKS[0]
                                                   and r["p50_ms_b32"] is not None],
                     "series": {fw: [r["p50_ms_b32"] for r in rows if r["framework"] == fw
                                     and r.get("p50_ms_b32") is not None] for fw in FRAMEWORKS}},
            "verdicts": [_smaller_faster(rows, timing)],
            "images": {}}


def _parameters(twin, model) -> int:
    """Learned parameters of ``model`` (its canonical tensors less BatchNorm's running statistics)."""
    return int(sum(v.size for k, v in twin.bridge.export_weights(model).items()
                   if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))))


def _smaller_faster(rows: list[dict], timing: dict) -> dict:
    claim = "A distilled student is much smaller and faster than its teacher and nearly as accurate"
    by = {(r["framework"], r["model"]): r for r in rows}
    if ("torch", "teacher") not in by:
        return {"claim": claim, "verdict": NOT_MEASURABLE,
                "evidence": "the teacher here is not a network (ridge regression on pixels): nothing to compare"}
    lines, faster, close = [], [], []
    for fw in FRAMEWORKS:
        teacher, student = by[fw, "teacher"], by[fw, "distilled student"]
        ratio = teacher["parameters"] / student["parameters"]
        for batch in (1, 32):
            t, s = timing[fw, "teacher", batch], timing[fw, "distilled student", batch]
            speedup, noise = t["p50_ms"] / s["p50_ms"], 2 * max(t["cv"], s["cv"])
            faster.append(speedup > 1 + noise)
            lines.append(f"{fw} batch {batch}: {speedup:.2f}x faster ({t['p50_ms']:.3f} against {s['p50_ms']:.3f} "
                         f"ms, noise {noise:.0%})")
        gap = teacher["test_accuracy"] - student["test_accuracy"]
        close.append(gap <= 0.05)
        lines.append(f"{fw}: {ratio:.1f}x fewer parameters, accuracy {student['test_accuracy']:.3f} against the "
                     f"teacher's {teacher['test_accuracy']:.3f} ({-gap:+.3f}, 'nearly' meaning within 0.05)")
    verdict = SUPPORTED if all(faster) and all(close) else REFUTED if not any(faster) else MIXED
    return {"claim": claim, "verdict": verdict, "evidence": "; ".join(lines)}


# ------------------------------------------------------------------------------------- claims


INT8 = ("tflite-int8", "torch-int8", "onnxruntime-int8", "onnxruntime-torch-int8")


def _quantized_student(results: dict, code: dict, env: dict) -> tuple[str, list[str]]:
    """The distilled student's int8 paths (the harness's quantize stage) against its fp32 self and the fp32
    teacher: supported when every int8 path keeps accuracy within 0.01 and the file is smaller than a quarter
    of the teacher's."""
    task = results.get("tasks", {}).get("distillation") or {}
    rows = [r for r in task.get("quantization", []) if r.get("variant") in INT8 and r.get("quality") is not None]
    study = next((s for s in task.get("studies", []) if s.get("name") == "teacher-student"), None)
    teacher = next((r for r in (study or {}).get("rows", []) if r["model"] == "teacher"), None)
    if not rows or teacher is None or not teacher.get("bytes"):
        return NOT_MEASURABLE, ["needs the distillation task's int8 rows and its network teacher (standard profile)"]
    lines, ok = [], []
    for r in rows:
        drop = r["fp32_quality"] - r["quality"]
        small = r.get("bytes") and r["bytes"] < teacher["bytes"] / 4
        ok.append(drop <= 0.01 and bool(small))
        size = f"{teacher['bytes'] / r['bytes']:.1f}x smaller than the fp32 teacher" if r.get("bytes") else \
            "no file (in memory)"
        lines.append(f"{r['variant']}: accuracy {r['quality']:.3f} ({-drop:+.3f} against fp32), {size}")
    verdict = SUPPORTED if all(ok) else REFUTED if not any(ok) else MIXED
    return verdict, lines


_study_verdict = functools.partial(study_verdict, "distillation")  # a claim graded by one of this task's studies


PLUGIN = TaskPlugin(
    studies=(Study(seeds_study, "scratch-vs-distilled", (10, 27)),
             Study(sweep_study, "temperature-alpha", (10,)),
             Study(teacher_student_study, "teacher-student", (10, 27))),
    claims=(
        ("distillation-keeps-accuracy", "10, 27", "A distilled student keeps or improves the accuracy of the "
                                                  "same network trained alone", _study_verdict("scratch-vs-distilled")),
        ("distillation-temperature", "10", "Softened teacher outputs carry more knowledge than hard predictions",
         _study_verdict("temperature-alpha")),
        ("distillation-smaller-faster", "10, 27", "Distillation gives a much smaller, faster model of nearly the "
                                                  "teacher's accuracy", _study_verdict("teacher-student")),
        ("distillation-with-quantization", "27", "Distillation and int8 quantization combine into a small model "
                                                 "for edge deployment", _quantized_student),
    ),
    prepare_data=attach_teacher,
)

__all__ = ["PLANS", "PLUGIN", "attach_teacher", "seeds_study", "sweep_study", "teacher_student_study"]
