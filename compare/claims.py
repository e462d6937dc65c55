"""The usual "PyTorch vs TensorFlow" claims (seed answers 13 and 30) and the quantization claims
(answers 11 and 28), graded on this run's numbers; then each task's own claims (its plug-in's
``claims``, compare/tasks/<task>.py).

Every verdict is computed from the results and the code, never typed in:
``supported``, ``refuted``, ``mixed``, or ``not measurable here`` with the reason. A claim is
``(id, seed answers, text, judge)`` with ``judge(results, code, env) -> (verdict, evidence)``; the helpers
below (``p50``, ``ratio_phrase``, ``verdict_of``, ``MARGIN``) are public for the tasks' judges.
"""

from __future__ import annotations

from typing import Callable

SUPPORTED, REFUTED, MIXED, NOT_MEASURABLE = "supported", "refuted", "mixed", "not measurable here"
# A difference smaller than this is treated as a tie (timing noise, counting style).
MARGIN = 0.10


def _row(task: dict, backend: str, batch: int) -> dict | None:
    return next((r for r in task.get("speed", []) if r["backend"] == backend and r["batch"] == batch), None)


def p50(task: dict, backend: str, batch: int) -> float | None:
    row = _row(task, backend, batch)
    return row["p50_ms"] if row else None


def ratio_phrase(slow: float, fast: float) -> str:
    return f"{slow / fast:.2f}x" if fast else "n/a"


def beats(task: dict, slow: str, fast: str, batch: int) -> bool | None:
    """Whether backend ``fast`` is faster than ``slow`` by more than the margin *and* more than the timing noise
    of both figures (their CV); None when either was not timed."""
    a, b = _row(task, slow, batch), _row(task, fast, batch)
    if not a or not b:
        return None
    noise = max(a.get("cv", 0.0), b.get("cv", 0.0))
    return a["p50_ms"] / b["p50_ms"] > 1 + max(MARGIN, 2 * noise)


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


def _by_size(verdicts: dict[str, list[bool]]) -> tuple[str, str]:
    """One verdict per size class from its flags, then the overall verdict and where it changes."""
    per_class = {c: verdict_of(flags) for c, flags in verdicts.items() if flags}
    if not per_class:
        return NOT_MEASURABLE, ""
    values = set(per_class.values())
    overall = values.pop() if len(values) == 1 else MIXED
    phrase = "; ".join(f"{c}: {v}" for c, v in per_class.items())
    if len(set(per_class.values())) > 1:
        phrase += " (the verdict changes with model size)"
    return overall, phrase


def static_graph(results: dict, code: dict, env: dict) -> tuple[str, str]:
    """Graph compilation beats eager execution in each framework, on small models and on ResNet-size ones."""
    lines, flags = [], {}
    for name, size_class, block in speed_sources(results):
        lines.append(f"[{name}, {_cost(block)}]")
        for batch in sorted({r["batch"] for r in block["speed"]}):
            eager, graph, xla = (p50(block, b, batch) for b in ("tensorflow-eager", "tensorflow", "tensorflow-xla"))
            t_eager, t_comp = p50(block, "torch", batch), p50(block, "torch-compile", batch)
            won = []
            if eager and graph:
                best = "tensorflow" if not xla or graph <= xla else "tensorflow-xla"
                won.append(bool(beats(block, "tensorflow-eager", best, batch)))
                lines.append(f"b{batch}: TF eager {eager:.3g} ms, tf.function {graph:.3g} ms"
                             + (f", XLA {xla:.3g} ms" if xla else "")
                             + f" (static {ratio_phrase(eager, min(graph, xla or graph))} faster)")
            if t_eager and t_comp:
                won.append(bool(beats(block, "torch", "torch-compile", batch)))
                lines.append(f"b{batch}: torch eager {t_eager:.3g} ms, torch.compile {t_comp:.3g} ms "
                             f"({ratio_phrase(t_eager, t_comp)})")
            if len(won) == 2:
                flags.setdefault(size_class, []).append(all(won))
    if not flags:
        return NOT_MEASURABLE, "no eager and compiled timings of both frameworks in this run"
    verdict, by_size = _by_size(flags)
    return verdict, (f"{by_size}. A point counts when both frameworks' compiled form is faster by more than "
                     f"{MARGIN:.0%} and twice the timing CV. " + "; ".join(lines))


def pythonic(results: dict, code: dict, env: dict) -> tuple[str, str]:
    """PyTorch twins take less code and fewer framework calls than the TensorFlow twins."""
    loc, calls = code["total_loc"], code["total_api_calls"]
    ratio = loc["torch"] / loc["tensorflow"]
    evidence = (f"lines of code over all twin modules: torch {loc['torch']}, tensorflow {loc['tensorflow']} "
                f"(torch/TF {ratio:.2f}); framework API calls: torch {calls['torch']}, tensorflow "
                f"{calls['tensorflow']}. Part of the TF code exists to match torch's numerics on purpose "
                f"(explicit padding, BatchNorm variance, coupled weight decay), a cost of this comparison")
    verdict = SUPPORTED if ratio < 1 - MARGIN else REFUTED if ratio > 1 + MARGIN else MIXED
    return verdict, evidence


def keras_high_level(results: dict, code: dict, env: dict) -> tuple[str, str]:
    """Keras compile/fit makes the training loop shorter than a hand-written PyTorch loop."""
    trainer = code.get("trainer_loc") or {}
    if not trainer.get("torch") or not trainer.get("tensorflow"):
        return NOT_MEASURABLE, "the Trainer twins were not found"
    ratio = trainer["tensorflow"] / trainer["torch"]
    evidence = (f"Trainer class (optimiser step, epoch loop, progress, per-epoch evaluation): torch "
                f"{trainer['torch']} lines, Keras fit-based {trainer['tensorflow']} lines (TF/torch {ratio:.2f}); "
                f"whole training.py: torch {code['training_loc']['torch']}, tensorflow "
                f"{code['training_loc']['tensorflow']} (the TF side includes the optimiser subclasses that make "
                f"Keras' update equal torch's)")
    verdict = SUPPORTED if ratio < 1 - MARGIN else REFUTED if ratio > 1 + MARGIN else MIXED
    return verdict, evidence


def _exports(results: dict) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {"torch": [], "tensorflow": []}
    for task in results["tasks"].values():
        for row in task.get("exports", []):
            out.setdefault(row["framework"], []).append(row)
    return out


def _compare(tf_value: float, torch_value: float) -> int:
    """+1 when TensorFlow's value is clearly smaller (better), -1 when PyTorch's is, 0 for a tie."""
    if tf_value < torch_value * (1 - MARGIN):
        return 1
    if tf_value > torch_value * (1 + MARGIN):
        return -1
    return 0


def tf_production(results: dict, code: dict, env: dict) -> tuple[str, str]:
    """TensorFlow deploys better: smaller deployable artifacts, faster serving, exports that work.

    Each framework's best deployable is compared, per model (tasks and reference workloads): TensorFlow's
    TFLite or ONNX export against PyTorch's .pt2 or ONNX export, by size and batch-1 latency. A latency
    difference counts only beyond the margin and twice the timing CV of both figures.
    """
    exports = _exports(results)
    tf_ok = bool(exports["tensorflow"]) and all(r["status"] == "ok" for r in exports["tensorflow"])
    lines, points = [], {}
    for name, size_class, block in speed_sources(results):
        sizes = {r["artifact"]: r["bytes"] for r in block.get("size", [])}
        tf_sizes = {a: sizes[a] for a in ("tflite-fp32", "onnx-from-tensorflow") if a in sizes}
        torch_sizes = {a: sizes[a] for a in ("pt2", "onnx-from-torch") if a in sizes}
        if tf_sizes and torch_sizes:
            tf_best, torch_best = min(tf_sizes, key=tf_sizes.get), min(torch_sizes, key=torch_sizes.get)
            points.setdefault(size_class, []).append(_compare(tf_sizes[tf_best], torch_sizes[torch_best]))
            lines.append(f"{name} smallest deployable: TF {tf_best} {tf_sizes[tf_best]} B vs torch {torch_best} "
                         f"{torch_sizes[torch_best]} B")
        tf_lat = {b: p50(block, b, 1) for b in ("tflite-fp32", "onnxruntime-from-tensorflow", "tensorflow")}
        torch_lat = {b: p50(block, b, 1) for b in ("torch", "torch-compile", "onnxruntime-from-torch")}
        tf_lat, torch_lat = {k: v for k, v in tf_lat.items() if v}, {k: v for k, v in torch_lat.items() if v}
        if tf_lat and torch_lat:
            tf_best, torch_best = min(tf_lat, key=tf_lat.get), min(torch_lat, key=torch_lat.get)
            point = 1 if beats(block, torch_best, tf_best, 1) else -1 if beats(block, tf_best, torch_best, 1) else 0
            points.setdefault(size_class, []).append(point)
            lines.append(f"{name} ({_cost(block)}) fastest batch-1 deployment: TF {tf_best} {tf_lat[tf_best]:.3g} ms "
                         f"vs torch {torch_best} {torch_lat[torch_best]:.3g} ms"
                         + ("" if point else " (a tie within margin and noise)"))
    lines.append("TF exports: " + ", ".join(f"{r['artifact']} {r['status']}" for r in exports["tensorflow"]))
    if not points:
        return NOT_MEASURABLE, "no deployable artifacts of both frameworks were produced in this run"
    lines.append("TFLite is the one mobile runtime here, and it is TensorFlow's; ONNX Runtime serves both "
                 "frameworks' exports")

    def grade(ps: list[int]) -> str:
        if tf_ok and all(p >= 0 for p in ps) and any(p > 0 for p in ps):
            return SUPPORTED
        if all(p <= 0 for p in ps) and any(p < 0 for p in ps):
            return REFUTED
        return MIXED

    per_class = {c: grade(ps) for c, ps in points.items()}
    overall = grade([p for ps in points.values() for p in ps])
    phrase = "; ".join(f"{c}: {v}" for c, v in per_class.items())
    if len(set(per_class.values())) > 1:
        phrase += " (the verdict changes with model size)"
    return overall, phrase + ". " + "; ".join(lines)


def torch_deploy_effort(results: dict, code: dict, env: dict) -> tuple[str, str]:
    """Getting a PyTorch model deployed takes extra work."""
    exports = _exports(results)
    torch_rows = exports["torch"]
    if not torch_rows:
        return NOT_MEASURABLE, "no PyTorch export was attempted in this run"
    ok = sum(r["status"] == "ok" for r in torch_rows)
    loc = code["export_loc"]
    evidence = (f"torch exports succeeded {ok}/{len(torch_rows)} ("
                + ", ".join(f"{r['artifact']} {r['status']}" for r in torch_rows)
                + f"); export code: torch {loc['torch']} lines, tensorflow {loc['tensorflow']} lines; "
                  "PyTorch has no TFLite path in this stack (mobile goes through ONNX)")
    ratio = loc["torch"] / max(loc["tensorflow"], 1)
    if ok < len(torch_rows) or ratio > 1 + MARGIN:
        return SUPPORTED, evidence
    if ratio < 1 - MARGIN:
        return REFUTED, evidence
    return MIXED, evidence


def gpu(results: dict, code: dict, env: dict) -> tuple[str, str]:
    """Both frameworks run faster on a GPU."""
    if not env.get("gpu"):
        return NOT_MEASURABLE, ("no CUDA GPU on this host (torch.cuda.is_available() is False and TensorFlow lists "
                                "no GPU); run the report with --device cuda on a GPU machine to measure it")
    return NOT_MEASURABLE, f"GPU present ({env['gpu']}) but this run timed CPU backends only"


def ecosystem(results: dict, code: dict, env: dict) -> tuple[str, str]:
    return NOT_MEASURABLE, ("counting pretrained models needs the model hubs, and this lab runs offline by design "
                            "(no downloads at run time)")


# -- quantization (seed answers 11 and 28) ------------------------------------------------------------
# An accuracy change of at most this much (fraction of test images) counts as "kept".
ACCURACY_KEPT = 0.01


def _quant_rows(results: dict) -> list[tuple[str, dict]]:
    return [(name, row) for name, task in results["tasks"].items() for row in task.get("quantization", [])]


def verdict_of(flags: list[bool]) -> str:
    return SUPPORTED if all(flags) else REFUTED if not any(flags) else MIXED


def quant_smaller(results: dict, code: dict, env: dict) -> tuple[str, str]:
    """8-bit integer storage makes the model about 4x smaller than float32 (at most 0.3x the bytes)."""
    rows = [(n, r) for n, r in _quant_rows(results) if "int8" in r["variant"] and r.get("size_ratio")]
    if not rows:
        return NOT_MEASURABLE, "no int8 artifact with a size was produced in this run"
    evidence = "; ".join(f"{n} {r['variant']}: {r['bytes']} B = {r['size_ratio']:.3f}x of {r['fp32_backend']}'s "
                         f"{r['fp32_bytes']} B" for n, r in rows)
    fp16 = [r for _, r in _quant_rows(results) if r["variant"] == "tflite-fp16" and r.get("size_ratio")]
    if fp16:
        evidence += f"; float16 for scale: {fp16[0]['size_ratio']:.3f}x"
    return verdict_of([r["size_ratio"] <= 0.3 for _, r in rows]), evidence


# The fp32 backend each int8 backend of the reference workloads is timed against (its own runtime).
WORKLOAD_INT8_SOURCES = {"torch-int8": "torch-compile", "onnxruntime-int8": "onnxruntime-from-torch",
                         "tflite-int8": "tflite-fp32"}


def _host_phrase(results: dict) -> str:
    host = results.get("run", {}).get("host", {})
    bits = host.get("int8", {}).get("weight_bits", "?")
    return (f"measured on {host.get('cpu', 'an unnamed CPU')} ({host.get('isa', 'ISA unknown')}; int8 weights "
            f"{bits}-bit): int8 speed depends on VNNI, which adds four u8 x s8 products in one instruction")


def quant_faster(results: dict, code: dict, env: dict) -> tuple[str, str]:
    """int8 inference is faster than float32 inference in the same runtime, on the tasks' models and on
    ResNet-size workloads; the CPU's int8 instructions are named, since the answer depends on them."""
    lines, flags = [], {}
    for name, r in _quant_rows(results):
        if "int8" not in r["variant"]:
            continue
        for batch in (1, 32):
            ratio = r.get(f"speedup_b{batch}")
            if ratio:
                flags.setdefault("task model", []).append(ratio > 1 + MARGIN)
                lines.append(f"{name} {r['variant']} b{batch}: {ratio:.2f}x vs {r['fp32_backend']}")
    for name, block in (results.get("workloads") or {}).items():
        for int8, fp32 in WORKLOAD_INT8_SOURCES.items():
            for batch in block.get("batches", []):
                q, f = p50(block, int8, batch), p50(block, fp32, batch)
                if q and f:
                    flags.setdefault("ResNet-size", []).append(f / q > 1 + MARGIN)
                    lines.append(f"{name} {int8} b{batch}: {f / q:.2f}x vs {fp32}")
    if not flags:
        return NOT_MEASURABLE, "no int8 variant was timed beside its float32 source in this run"
    verdict, by_size = _by_size(flags)
    return verdict, (f"{by_size}; {_host_phrase(results)}. " + "; ".join(lines)
                     + f" (speedup = fp32 p50 / int8 p50; > {1 + MARGIN:.2f}x counts)")


def quant_energy(results: dict, code: dict, env: dict) -> tuple[str, str]:
    """int8 inference uses less energy."""
    return NOT_MEASURABLE, ("no energy counter is read by this lab (on Linux x86 the RAPL counters under "
                            "/sys/class/powercap need privileges and are absent in most VMs and containers); "
                            "latency is the only proxy measured here, see the faster-inference claim")


def quant_accuracy(results: dict, code: dict, env: dict) -> tuple[str, str]:
    """Post-training int8 keeps the float model's accuracy."""
    rows = [(n, r) for n, r in _quant_rows(results) if "int8" in r["variant"] and "qat" not in r["variant"]
            and r.get("quality") is not None and r.get("fp32_quality") is not None]
    if not rows:
        return NOT_MEASURABLE, "no post-training int8 variant was evaluated in this run"
    drops = [(n, r, r["fp32_quality"] - r["quality"]) for n, r in rows]
    evidence = "; ".join(f"{n} {r['variant']}: {r['metric']} {r['quality']:.4f} vs fp32 {r['fp32_quality']:.4f} "
                         f"(drop {d:+.4f}, top-1 agreement {r.get('top1_agreement') or 0:.4f})" for n, r, d in drops)
    return verdict_of([d <= ACCURACY_KEPT for _, _, d in drops]), evidence + f" (kept: drop <= {ACCURACY_KEPT})"


def qat_vs_ptq(results: dict, code: dict, env: dict) -> tuple[str, str]:
    """Quantization-aware training preserves accuracy better than post-training quantization."""
    pairs = {"tensorflow": ("tflite-int8", "tflite-int8-qat"), "torch": ("torch-int8", "torch-int8-qat")}
    lines, points = [], []
    for name, task in results["tasks"].items():
        acc = {r["variant"]: r.get("quality") for r in task.get("quantization", [])}
        for framework, (ptq, qat) in pairs.items():
            if acc.get(ptq) is None or acc.get(qat) is None:
                continue
            diff = acc[qat] - acc[ptq]
            points.append(0 if abs(diff) <= ACCURACY_KEPT / 2 else 1 if diff > 0 else -1)
            lines.append(f"{name} {framework}: QAT {acc[qat]:.4f} vs PTQ {acc[ptq]:.4f} ({diff:+.4f})")
    if not points:
        return NOT_MEASURABLE, "no PTQ / QAT pair of one framework was evaluated in this run"
    evidence = "; ".join(lines) + (f" (a difference within {ACCURACY_KEPT / 2} is a tie: when PTQ already keeps "
                                   f"the accuracy, QAT has nothing to recover)")
    if all(p > 0 for p in points):
        return SUPPORTED, evidence
    if all(p < 0 for p in points):
        return REFUTED, evidence
    return MIXED, evidence


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
    """The ``claims`` block of results.json."""
    out = []
    for claim_id, answers, text, judge in all_claims():
        try:
            verdict, evidence = judge(results, code, env)
        except Exception as err:  # noqa: BLE001 - a claim whose evidence is broken says so
            verdict, evidence = NOT_MEASURABLE, f"evidence could not be computed: {type(err).__name__}: {err}"
        out.append({"id": claim_id, "seed_answer": answers, "text": text, "evidence": evidence, "verdict": verdict})
    return out
