"""The usual "PyTorch vs TensorFlow" claims (seed answers 13 and 30) and the quantization claims
(answers 11 and 28), graded on this run's numbers; then each task's own claims (its plug-in's
``claims``, compare/tasks/<task>.py).

Every verdict is computed from the results and the code, never typed in: ``supported``, ``refuted``,
``mixed`` (some points one way, some the other), ``tie`` (no difference beyond the measured noise or the stated
threshold), or ``not measurable here`` with the reason. A claim is ``(id, seed answers, text, judge)`` with
``judge(results, code, env) -> (verdict, evidence)``, the evidence a short list of lines (figure, comparison,
margin against noise); the helpers below (``p50``, ``faster``, ``verdict_from``, ``MARGIN``) are public for the
tasks' judges.

The tie rule: two timings differ only when their ratio exceeds 1 + max(MARGIN, 2 x the larger CV of the two),
so a gap inside the timing noise is no evidence either way; sizes and line counts differ only beyond MARGIN,
accuracies beyond ACCURACY_KEPT.
"""

from __future__ import annotations

from typing import Callable

SUPPORTED, REFUTED, MIXED, TIE, NOT_MEASURABLE = "supported", "refuted", "mixed", "tie", "not measurable here"
VERDICTS = (SUPPORTED, REFUTED, MIXED, TIE, NOT_MEASURABLE)
# A difference smaller than this is treated as a tie (timing noise, counting style).
MARGIN = 0.10
# An accuracy change of at most this much (fraction of test images) counts as "kept" (about one standard error
# of an accuracy near 0.9 on the 800 held-out images of the standard profile).
ACCURACY_KEPT = 0.01


def speed_row(task: dict, backend: str, batch: int) -> dict | None:
    """The speed row of one backend at one batch size, or None."""
    return next((r for r in task.get("speed", []) if r["backend"] == backend and r["batch"] == batch), None)


def p50(task: dict, backend: str, batch: int) -> float | None:
    row = speed_row(task, backend, batch)
    return row["p50_ms"] if row else None


def ratio_phrase(slow: float, fast: float) -> str:
    return f"{slow / fast:.2f}x" if fast else "n/a"


def noise_bound(task: dict, a: str, b: str, batch: int) -> float:
    """The ratio two timings must exceed (minus one) to differ: the margin, or twice the larger CV."""
    rows = [r for r in (speed_row(task, a, batch), speed_row(task, b, batch)) if r]
    return max(MARGIN, 2 * max((r.get("cv", 0.0) for r in rows), default=0.0))


def faster(task: dict, slow: str, fast: str, batch: int) -> int | None:
    """+1 when backend ``fast`` beats ``slow`` beyond the margin and the timing noise of both figures, -1 when it
    is slower beyond them, 0 for a tie; None when either was not timed."""
    a, b = speed_row(task, slow, batch), speed_row(task, fast, batch)
    if not a or not b:
        return None
    bound = 1 + noise_bound(task, slow, fast, batch)
    ratio = a["p50_ms"] / b["p50_ms"]
    return 1 if ratio > bound else -1 if ratio < 1 / bound else 0


def beats(task: dict, slow: str, fast: str, batch: int) -> bool | None:
    """Whether ``fast`` beats ``slow`` beyond the margin and the noise (None when either was not timed)."""
    point = faster(task, slow, fast, batch)
    return None if point is None else point > 0


def point_word(point: int) -> str:
    return {1: "yes", -1: "no, the reverse", 0: "tie"}[point]


def timing_line(label: str, slow_name: str, slow: float, fast_name: str, fast: float, point: int,
                bound: float) -> str:
    """One comparison of two timings as an evidence line: figures, ratio, noise bound, outcome."""
    return (f"{label}: {fast_name} {fast:.3g} ms vs {slow_name} {slow:.3g} ms = {ratio_phrase(slow, fast)} "
            f"(differs beyond {1 + bound:.2f}x): {point_word(point)}")


def speed_sources(results: dict) -> list[tuple[str, str, dict]]:
    """What the speed claims are graded on, smallest first: (name, size class, speed block). The tasks' own
    models and the reference workloads (compare.workloads: ResNets at 224 px); the size class names the
    model's cost so that a verdict can say where it changes with model size."""
    out = []
    for name, task in results.get("tasks", {}).items():
        if task.get("speed"):
            out.append((name, "task model", task))
    for name, block in (results.get("workloads") or {}).items():
        if block.get("speed"):
            out.append((f"{name}@{block.get('image_size', 224)}", "ResNet-size", block))
    return out


def _cost(block: dict) -> str:
    flops = block.get("flops_per_image")
    return f"{flops / 1e9:.2g} GFLOP/image" if flops else "FLOPs not counted"


def verdict_of(flags: list[bool]) -> str:
    """Each flag: the claim held at that point (True) or did not."""
    return SUPPORTED if all(flags) else REFUTED if not any(flags) else MIXED


def verdict_from(points: list[int]) -> str:
    """Tri-state points (+1 the claim holds beyond the noise, -1 the reverse holds, 0 a tie): one verdict.
    Supported when it holds at every point, a tie when no point differs, refuted when it holds at none (the
    reverse at some), mixed when it holds at some points and not at others."""
    if not points:
        return NOT_MEASURABLE
    if all(p > 0 for p in points):
        return SUPPORTED
    if all(p == 0 for p in points):
        return TIE
    if all(p <= 0 for p in points):
        return REFUTED
    return MIXED


def _by_size(points: dict[str, list[int]]) -> tuple[str, str]:
    """One verdict per size class from its points, then the overall verdict and where it changes."""
    per_class = {c: verdict_from(ps) for c, ps in points.items() if ps}
    if not per_class:
        return NOT_MEASURABLE, ""
    values = set(per_class.values())
    overall = values.pop() if len(values) == 1 else MIXED
    phrase = "; ".join(f"{c}: {v}" for c, v in per_class.items())
    if len(set(per_class.values())) > 1:
        phrase += " (the verdict changes with model size)"
    return overall, phrase


def _count_ratio(ratio: float) -> int:
    """A ratio of counts (lines, bytes): +1 below 1 - MARGIN, -1 above 1 + MARGIN, else a tie."""
    return 1 if ratio < 1 - MARGIN else -1 if ratio > 1 + MARGIN else 0


def static_graph(results: dict, code: dict, env: dict) -> tuple[str, list[str]]:
    """Graph compilation beats eager execution in each framework, on small models and on ResNet-size ones."""
    lines, points = [], {}
    for name, size_class, block in speed_sources(results):
        for batch in sorted({r["batch"] for r in block["speed"]}):
            graph, xla = p50(block, "tensorflow", batch), p50(block, "tensorflow-xla", batch)
            best = "tensorflow-xla" if xla and (not graph or xla < graph) else "tensorflow"
            for slow, fast, label in (("tensorflow-eager", best, "TF"), ("torch", "torch-compile", "torch")):
                point = faster(block, slow, fast, batch)
                if point is None:
                    continue
                points.setdefault(size_class, []).append(point)
                lines.append(timing_line(f"{name} b{batch} {label}", slow, p50(block, slow, batch), fast,
                                         p50(block, fast, batch), point, noise_bound(block, slow, fast, batch)))
    if not points:
        return NOT_MEASURABLE, ["no eager and compiled timings of both frameworks in this run"]
    verdict, by_size = _by_size(points)
    costs = "; ".join(f"{name}: {_cost(block)}" for name, _, block in speed_sources(results))
    return verdict, [by_size, f"model cost: {costs}", *lines]


def pythonic(results: dict, code: dict, env: dict) -> tuple[str, list[str]]:
    """PyTorch twins take less code and fewer framework calls than the TensorFlow twins."""
    loc, calls = code["total_loc"], code["total_api_calls"]
    ratio = loc["torch"] / loc["tensorflow"]
    return verdict_from([_count_ratio(ratio)]), [
        f"lines of code over all twin modules: torch {loc['torch']}, tensorflow {loc['tensorflow']} = "
        f"{ratio:.2f} (differs beyond {1 - MARGIN:.2f}-{1 + MARGIN:.2f})",
        f"framework API calls: torch {calls['torch']}, tensorflow {calls['tensorflow']}",
        "part of the TF code matches torch's numerics on purpose (explicit padding, BatchNorm variance, coupled "
        "weight decay): a cost of this comparison, not of TensorFlow"]


def keras_high_level(results: dict, code: dict, env: dict) -> tuple[str, list[str]]:
    """Keras compile/fit makes the training loop shorter than a hand-written PyTorch loop."""
    trainer = code.get("trainer_loc") or {}
    if not trainer.get("torch") or not trainer.get("tensorflow"):
        return NOT_MEASURABLE, ["the Trainer twins were not found"]
    ratio = trainer["tensorflow"] / trainer["torch"]
    return verdict_from([_count_ratio(ratio)]), [
        f"Trainer class (optimiser step, epoch loop, progress, per-epoch evaluation): Keras fit-based "
        f"{trainer['tensorflow']} lines, torch {trainer['torch']} lines = {ratio:.2f} "
        f"(differs beyond {1 - MARGIN:.2f}-{1 + MARGIN:.2f})",
        f"whole training.py: torch {code['training_loc']['torch']}, tensorflow {code['training_loc']['tensorflow']} "
        f"(the TF side includes the optimiser subclasses that make Keras' update equal torch's)"]


def _exports(results: dict) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {"torch": [], "tensorflow": []}
    for task in results["tasks"].values():
        for row in task.get("exports", []):
            out.setdefault(row["framework"], []).append(row)
    return out


# Each framework's deployable artifacts and serving backends, for the production claim and the summary.
DEPLOYABLE = {"tensorflow": ("tflite-fp32", "onnx-from-tensorflow"), "torch": ("pt2", "onnx-from-torch")}
SERVING = {"tensorflow": ("tflite-fp32", "onnxruntime-from-tensorflow", "tensorflow", "tensorflow-xla"),
           "torch": ("torch", "torch-compile", "onnxruntime-from-torch")}


def _status_counts(rows: list[dict]) -> str:
    """'10 ok, 2 skipped (pt2, onnx-from-torch)': export outcomes counted, the ones not ok named."""
    counts: dict[str, list[str]] = {}
    for row in rows:
        counts.setdefault(row["status"], []).append(row["artifact"])
    return ", ".join(f"{len(names)} {status}" + ("" if status == "ok" else f" ({', '.join(sorted(set(names)))})")
                     for status, names in counts.items())


def tf_production(results: dict, code: dict, env: dict) -> tuple[str, list[str]]:
    """TensorFlow deploys better: smaller deployable artifacts, faster serving, exports that work.

    Each framework's best deployable is compared, per model (tasks and reference workloads): TensorFlow's
    TFLite or ONNX export against PyTorch's .pt2 or ONNX export, by size and batch-1 latency. A latency
    difference counts only beyond the margin and twice the timing CV of both figures; a size difference only
    beyond the margin.
    """
    exports = _exports(results)
    tf_ok = bool(exports["tensorflow"]) and all(r["status"] in ("ok", "skipped") for r in exports["tensorflow"])
    lines, points = [], {}
    for name, size_class, block in speed_sources(results):
        sizes = {r["artifact"]: r["bytes"] for r in block.get("size", [])}
        best = {fw: min((a for a in names if a in sizes), key=sizes.get, default=None)
                for fw, names in DEPLOYABLE.items()}
        if best["tensorflow"] and best["torch"]:
            tf_b, torch_b = sizes[best["tensorflow"]], sizes[best["torch"]]
            point = _count_ratio(tf_b / torch_b)
            points.setdefault(size_class, []).append(point)
            lines.append(f"{name} smallest deployable: TF {best['tensorflow']} {tf_b:,} B vs torch {best['torch']} "
                         f"{torch_b:,} B = {tf_b / torch_b:.3f} (differs beyond +-{MARGIN:.0%}): "
                         f"{point_word(point)}")
        lat = {fw: {b: p50(block, b, 1) for b in names if p50(block, b, 1)} for fw, names in SERVING.items()}
        if lat["tensorflow"] and lat["torch"]:
            tf_b, torch_b = (min(lat[fw], key=lat[fw].get) for fw in ("tensorflow", "torch"))
            point = faster(block, torch_b, tf_b, 1)
            points.setdefault(size_class, []).append(point)
            lines.append(timing_line(f"{name} ({_cost(block)}) fastest batch-1 serving", torch_b, lat["torch"][torch_b],
                                     tf_b, lat["tensorflow"][tf_b], point, noise_bound(block, torch_b, tf_b, 1)))
    if not points:
        return NOT_MEASURABLE, ["no deployable artifacts of both frameworks were produced in this run"]
    lines.append("TF exports: " + _status_counts(exports["tensorflow"]))
    lines.append("TFLite is the one mobile runtime here, and it is TensorFlow's; ONNX Runtime serves both "
                 "frameworks' exports")

    def grade(ps: list[int]) -> str:
        verdict = verdict_from(ps)
        return MIXED if verdict == SUPPORTED and not tf_ok else verdict  # better, but its exports failed

    per_class = {c: grade(ps) for c, ps in points.items()}
    overall = grade([p for ps in points.values() for p in ps])
    phrase = "; ".join(f"{c}: {v}" for c, v in per_class.items())
    if len(set(per_class.values())) > 1:
        phrase += " (the verdict changes with model size)"
    return overall, [phrase, *lines]


def torch_deploy_effort(results: dict, code: dict, env: dict) -> tuple[str, list[str]]:
    """Getting a PyTorch model deployed takes extra work."""
    torch_rows = _exports(results)["torch"]
    if not torch_rows:
        return NOT_MEASURABLE, ["no PyTorch export was attempted in this run"]
    failed = sum(r["status"] == "failed" for r in torch_rows)  # "skipped": the model declares it does not export
    loc = code["export_loc"]
    ratio = loc["torch"] / max(loc["tensorflow"], 1)
    evidence = [f"torch exports: {_status_counts(torch_rows)}",
                f"export code: torch {loc['torch']} lines, tensorflow {loc['tensorflow']} lines = {ratio:.2f} "
                f"(differs beyond {1 - MARGIN:.2f}-{1 + MARGIN:.2f})",
                "PyTorch has no TFLite path in this stack (mobile goes through ONNX)"]
    if failed:
        return SUPPORTED, evidence
    return verdict_from([-_count_ratio(ratio)]), evidence


def gpu(results: dict, code: dict, env: dict) -> tuple[str, list[str]]:
    """Both frameworks run faster on a GPU."""
    if not env.get("gpu"):
        return NOT_MEASURABLE, ["no CUDA GPU on this host (torch.cuda.is_available() is False and TensorFlow lists "
                                "no GPU); run the report with --device cuda on a GPU machine to measure it"]
    return NOT_MEASURABLE, [f"GPU present ({env['gpu']}) but this run timed CPU backends only"]


def ecosystem(results: dict, code: dict, env: dict) -> tuple[str, list[str]]:
    return NOT_MEASURABLE, ["counting pretrained models needs the model hubs, and this lab runs offline by design "
                            "(no downloads at run time)"]


# -- quantization (seed answers 11 and 28) ------------------------------------------------------------


def _quant_rows(results: dict) -> list[tuple[str, dict]]:
    return [(name, row) for name, task in results["tasks"].items() for row in task.get("quantization", [])]


def quant_smaller(results: dict, code: dict, env: dict) -> tuple[str, list[str]]:
    """8-bit integer storage makes the model about 4x smaller than float32 (at most 0.3x the bytes)."""
    rows = [(n, r) for n, r in _quant_rows(results) if "int8" in r["variant"] and r.get("size_ratio")]
    if not rows:
        return NOT_MEASURABLE, ["no int8 artifact with a size was produced in this run"]
    evidence = ["counts when the int8 file is at most 0.3x its fp32 source"]
    evidence += [f"{n} {r['variant']}: {r['bytes']:,} B = {r['size_ratio']:.3f}x of {r['fp32_backend']}'s "
                 f"{r['fp32_bytes']:,} B" for n, r in rows]
    fp16 = [r for _, r in _quant_rows(results) if r["variant"] == "tflite-fp16" and r.get("size_ratio")]
    if fp16:
        evidence.append(f"float16 for scale: {fp16[0]['size_ratio']:.3f}x")
    return verdict_of([r["size_ratio"] <= 0.3 for _, r in rows]), evidence


# The fp32 backend each int8 backend of the reference workloads is timed against (its own runtime).
WORKLOAD_INT8_SOURCES = {"torch-int8": "torch-compile", "onnxruntime-int8": "onnxruntime-from-torch",
                         "tflite-int8": "tflite-fp32"}


def _host_phrase(results: dict) -> str:
    host = results.get("run", {}).get("host", {})
    bits = host.get("int8", {}).get("weight_bits", "?")
    return (f"measured on {host.get('cpu', 'an unnamed CPU')} ({host.get('isa', 'ISA unknown')}; int8 weights "
            f"{bits}-bit): int8 speed depends on VNNI, which adds four u8 x s8 products in one instruction")


def quant_faster(results: dict, code: dict, env: dict) -> tuple[str, list[str]]:
    """int8 inference is faster than float32 inference in the same runtime, on the tasks' models and on
    ResNet-size workloads; the CPU's int8 instructions are named, since the answer depends on them."""
    lines, points = [], {}
    for name, task in results["tasks"].items():
        for r in task.get("quantization", []):
            if "int8" not in r["variant"]:
                continue
            for batch in (1, 32):
                point = faster(task, r["fp32_backend"], r["variant"], batch)
                if point is not None:
                    points.setdefault("task model", []).append(point)
                    lines.append(timing_line(f"{name} b{batch}", r["fp32_backend"], p50(task, r["fp32_backend"], batch),
                                             r["variant"], p50(task, r["variant"], batch), point,
                                             noise_bound(task, r["fp32_backend"], r["variant"], batch)))
    for name, block in (results.get("workloads") or {}).items():
        for int8, fp32 in WORKLOAD_INT8_SOURCES.items():
            for batch in block.get("batches", []):
                point = faster(block, fp32, int8, batch)
                if point is not None:
                    points.setdefault("ResNet-size", []).append(point)
                    lines.append(timing_line(f"{name} b{batch}", fp32, p50(block, fp32, batch), int8,
                                             p50(block, int8, batch), point, noise_bound(block, fp32, int8, batch)))
    if not points:
        return NOT_MEASURABLE, ["no int8 variant was timed beside its float32 source in this run"]
    verdict, by_size = _by_size(points)
    return verdict, [by_size, _host_phrase(results), *lines]


def quant_energy(results: dict, code: dict, env: dict) -> tuple[str, list[str]]:
    """int8 inference uses less energy."""
    return NOT_MEASURABLE, ["no energy counter is read by this lab (on Linux x86 the RAPL counters under "
                            "/sys/class/powercap need privileges and are absent in most VMs and containers)",
                            "latency is the only proxy measured here: see the faster-inference claim"]


def quant_accuracy(results: dict, code: dict, env: dict) -> tuple[str, list[str]]:
    """Post-training int8 keeps the float model's accuracy."""
    rows = [(n, r) for n, r in _quant_rows(results) if "int8" in r["variant"] and "qat" not in r["variant"]
            and r.get("quality") is not None and r.get("fp32_quality") is not None]
    if not rows:
        return NOT_MEASURABLE, ["no post-training int8 variant was evaluated in this run"]
    drops = [(n, r, r["fp32_quality"] - r["quality"]) for n, r in rows]
    evidence = [f"kept: a drop of at most {ACCURACY_KEPT}"]
    evidence += [f"{n} {r['variant']}: {r['metric']} {r['quality']:.4f} vs fp32 {r['fp32_quality']:.4f} "
                 f"(drop {d:+.4f}" + ("" if r.get("top1_agreement") is None else f", top-1 agreement "
                 f"{r['top1_agreement']:.4f}") + ")" for n, r, d in drops]
    return verdict_of([d <= ACCURACY_KEPT for _, _, d in drops]), evidence


def qat_vs_ptq(results: dict, code: dict, env: dict) -> tuple[str, list[str]]:
    """Quantization-aware training preserves accuracy better than post-training quantization."""
    pairs = {"tensorflow": ("tflite-int8", "tflite-int8-qat"), "torch": ("torch-int8", "torch-int8-qat")}
    lines, points = [f"a difference within {ACCURACY_KEPT / 2} is a tie: when PTQ already keeps the accuracy, "
                     f"QAT has nothing to recover"], []
    for name, task in results["tasks"].items():
        acc = {r["variant"]: r.get("quality") for r in task.get("quantization", [])}
        for framework, (ptq, qat) in pairs.items():
            if acc.get(ptq) is None or acc.get(qat) is None:
                continue
            diff = acc[qat] - acc[ptq]
            point = 0 if abs(diff) <= ACCURACY_KEPT / 2 else 1 if diff > 0 else -1
            points.append(point)
            lines.append(f"{name} {framework}: QAT {acc[qat]:.4f} vs PTQ {acc[ptq]:.4f} ({diff:+.4f}): "
                         f"{point_word(point)}")
    if not points:
        return NOT_MEASURABLE, ["no PTQ / QAT pair of one framework was evaluated in this run"]
    return verdict_from(points), lines


CLAIMS: tuple[tuple[str, str, str, Callable], ...] = (
    ("static-graph", "13, 30", "A static graph lets the framework optimise better than eager execution", static_graph),
    ("pytorch-pythonic", "13, 30", "PyTorch is more Pythonic and simpler to write", pythonic),
    ("keras-high-level", "13, 30", "Keras' high-level API makes building and training simpler", keras_high_level),
    ("tf-production", "13, 30", "TensorFlow is better suited to production and mobile deployment", tf_production),
    ("torch-deploy-effort", "13, 30", "Deploying PyTorch models takes additional effort", torch_deploy_effort),
    ("gpu-acceleration", "13, 14, 30", "Both frameworks accelerate CNN work on GPUs", gpu),
    ("tf-ecosystem", "13, 30", "TensorFlow offers the larger ecosystem of pretrained models", ecosystem),
    ("quant-smaller", "11, 28", "8-bit quantization makes a model about 4x smaller", quant_smaller),
    ("quant-faster", "11, 28", "Quantized models run inference faster", quant_faster),
    ("quant-energy", "11, 28", "Quantized models use less energy", quant_energy),
    ("quant-accuracy", "11, 28", "Post-training quantization keeps acceptable accuracy", quant_accuracy),
    ("qat-vs-ptq", "11, 28", "Quantization-aware training preserves accuracy better than post-training "
                             "quantization", qat_vs_ptq),
)


def all_claims() -> tuple[tuple[str, str, str, Callable], ...]:
    """The generic claims, then those of every task with twins (graded whether or not this run has the task: a
    claim without its evidence says what run would measure it)."""
    from shared.specs import TASKS, RUNNABLE

    from .tasks import plugin

    return CLAIMS + tuple(c for name, e in TASKS.items() if e.status in RUNNABLE for c in plugin(name).claims)


def grade(results: dict, code: dict, env: dict) -> list[dict]:
    """The ``claims`` block of results.json: evidence always a list of lines."""
    out = []
    for claim_id, answers, text, judge in all_claims():
        try:
            verdict, evidence = judge(results, code, env)
        except Exception as err:  # noqa: BLE001 - a claim whose evidence is broken says so
            verdict, evidence = NOT_MEASURABLE, [f"evidence could not be computed: {type(err).__name__}: {err}"]
        evidence = [evidence] if isinstance(evidence, str) else [line for line in evidence if line]
        out.append({"id": claim_id, "seed_answer": answers, "text": text, "evidence": evidence, "verdict": verdict})
    return out
