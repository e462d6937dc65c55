"""A study guide: each of the seed's 30 questions, the paired files that answer it in code,
and the report section whose numbers ground it.

Generated from the task registry (``shared.specs.TASKS``: each task lists the
seed answers it measures), so it cannot drift from the code. The questions are
paraphrased here, not quoted.
"""

from __future__ import annotations

from pathlib import Path

from shared.specs import RUNNABLE, TASKS, run_name

from .studies import studies_for

ROOT = Path(__file__).resolve().parent.parent

QUESTIONS = {
    1: "What it means for a CNN to learn its own features, layer by layer",
    2: "How the loss gradient travels back through a vision network to every weight",
    3: "Why reusing a network trained elsewhere helps, and how it is done",
    4: "Which augmentations enlarge an image data set, and what they do to accuracy",
    5: "How CNN detectors find and box objects; the main detector families",
    6: "How a CNN follows one object through the frames of a video",
    7: "What segmentation is for and how CNNs label pixels",
    8: "Reading text in images with CNNs, and what makes it hard",
    9: "Image embeddings: what they are and where they are used",
    10: "Shrinking a big model into a small one by distillation",
    11: "Quantization: fewer bits per weight, less memory",
    12: "Training one CNN on several devices or machines",
    13: "PyTorch and TensorFlow compared for CNN work",
    14: "Why GPUs speed up CNN training and inference",
    15: "What occlusion and lighting changes do to a CNN, and the remedies",
    16: "Spatial pooling and its part in feature extraction",
    17: "Ways to cope with imbalanced classes",
    18: "Transfer learning as a step in building a model",
    19: "Occlusion in object detection and how to soften its effect",
    20: "Image segmentation and its applications",
    21: "Instance segmentation with CNNs and its architectures",
    22: "Object tracking and its difficulties",
    23: "What anchor boxes do in SSD and Faster R-CNN",
    24: "How Mask R-CNN is built and why it works",
    25: "OCR with CNNs and its challenges",
    26: "Embeddings for finding similar images",
    27: "What distillation buys and how to implement it",
    28: "Quantization and model efficiency",
    29: "How training across machines or GPUs improves performance",
    30: "Features and capabilities of PyTorch and TensorFlow side by side",
}

# Answers grounded by the harness itself rather than one task: report section and what to read.
HARNESS = {
    11: ("claims", "the quantization claims; the quantization table in each task's section: TFLite fp16 / "
                   "dynamic / int8 / QAT, torch pt2e int8 / QAT, ONNX Runtime int8; pytorch_impl/quantize.py "
                   "beside tensorflow_impl/quantize.py"),
    13: ("claims", "the claims table and every backend's speed, size and parity"),
    14: ("claims", "the GPU claim; --device cuda"),
    28: ("claims", "as 11, plus pruning and clustering (accuracy against sparsity and compressed size)"),
    30: ("claims", "the claims table and the paired-code view"),
}


def _task_files(task: str) -> list[str]:
    files = []
    for pkg in ("pytorch_impl", "tensorflow_impl"):
        folder = ROOT / pkg / task
        if folder.is_dir():
            files += sorted(p.relative_to(ROOT).as_posix() for p in folder.glob("*.py") if p.name != "__init__.py")
        files += [f"{pkg}/{name}" for name in TASKS[task].modules if (ROOT / pkg / name).is_file()]
    return files


def entries() -> list[dict]:
    """One row per question: tasks, paired files, report sections, and whether the code exists yet."""
    rows = []
    for number, question in QUESTIONS.items():
        tasks = [name for name, e in TASKS.items() if number in e.seed_answers]
        files = [f for t in tasks if TASKS[t].status in RUNNABLE for f in _task_files(t)]
        sections = [f"task-{t}" for t in tasks]
        for t in tasks:
            if TASKS[t].status in RUNNABLE:
                sections += [f"task-{run_name(t, v)}" for v in TASKS[t].variants]
                # A study's section in the first run that has it (the boxes picture runs on every detector).
                shown = set()
                for v in (None, *TASKS[t].variants):
                    for s in studies_for(t, v):
                        if number in s.seed_answers and s.name not in shown:
                            shown.add(s.name)
                            sections.append(f"study-{run_name(t, v)}-{s.name}")
        notes = []
        if number in HARNESS:
            section, what = HARNESS[number]
            sections.append(section)
            notes.append(what)
        status = ("ready" if any(TASKS[t].status == "ready" for t in tasks) or number in (11, 13, 28, 30)
                  else "preview" if any(TASKS[t].status == "preview" for t in tasks) else "planned")
        rows.append({"number": number, "question": question, "tasks": tasks, "files": files,
                     "sections": sections, "notes": notes, "status": status})
    return rows


def section_label(anchor: str) -> str:
    """A report anchor in words: ``task-detection.yolo`` -> ``detection.yolo``, ``study-detection.yolo-occlusion``
    -> ``detection.yolo: occlusion study``, ``claims`` -> ``claims``."""
    kind, _, rest = anchor.partition("-")
    if kind == "task" and rest:
        return rest
    if kind == "study" and rest:
        run, _, study = rest.rpartition("-")
        return f"{run}: {study} study"
    return anchor.replace("-", " ")


def markdown() -> str:
    """The guide as Markdown (docs/GUIDE.md is this text; a test keeps it current)."""
    lines = ["# Study guide: the 30 questions, in code and in numbers", "",
             "Generated by `twinvision guide --write docs/GUIDE.md` from the task registry; do not edit by hand.",
             "Questions are paraphrased. Paired files open side by side; report sections are anchors in "
             "`index.html`.", "", "| # | question | tasks | paired files | report | status |",
             "| --- | --- | --- | --- | --- | --- |"]
    for row in entries():
        files = "<br>".join(f"`{f}`" for f in row["files"]) or "-"
        report = ", ".join(f"#{s}" for s in row["sections"]) + ("; " + "; ".join(row["notes"]) if row["notes"] else "")
        lines.append(f"| {row['number']} | {row['question']} | {', '.join(row['tasks']) or '-'} | {files} | "
                     f"{report or '-'} | {row['status']} |")
    return "\n".join(lines) + "\n"
