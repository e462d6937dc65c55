"""Task specifications and the task registry.

``TASKS`` is the one list of tasks: the command line, the report, the parity
tests and the study guide all iterate over it, so a task plugs in by adding an
entry here and implementing the twin contract in both impl packages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from . import (augmentation, classification, detection, distillation, instance_segmentation, ocr, semantic_segmentation,
               transfer_learning)
from .base import ParityTolerances, SpecError, TrainSpec, spec_key, spec_to_dict

FRAMEWORKS = ("torch", "tensorflow")
PRESETS = ("tiny", "standard")
STATUSES = ("ready", "preview", "planned")
RUNNABLE = ("ready", "preview")  # statuses whose twins exist


@dataclass(frozen=True)
class TaskEntry:
    """One registry row.

    status: ``ready`` when both twins implement the contract and the default
        report runs the task; ``preview`` when the twins work (parity, training,
        every backend) but the task does not yet fit the default report's time
        budgets (docs/ARCHITECTURE.md), so the report runs it only when asked by name
        (``--tasks NAME``); ``planned`` while the task is on the roadmap only.
    seed_answers: the numbers of the seed answers whose claims it measures.
    presets: the main model's specs by preset (``tiny`` for tests, ``standard`` for the report).
    model: the name of the main model (the report's headings; a variant's name is its key in ``variants``).
    variants: further models of the same task, each with its own presets (the detection task's
        YOLO- and Faster R-CNN-style detectors beside its SSD). The report runs each variant
        through training, parity, exports and the fp32 backends, as a section of its own
        (``<task>.<variant>``); quantization and compression studies run on the main model only.
    studies_on: for a task made of studies only (no twins of its own), the task whose twins, presets and
        data its studies use; the harness runs its data and studies stages and nothing else.
    modules: for a study-only task, the modules of both twin packages its studies run (the study guide's
        paired files), e.g. ``data_parallel.py``.
    """

    name: str
    summary: str
    seed_answers: tuple[int, ...]
    status: str = "planned"
    presets: dict[str, Callable[[], Any]] = field(default_factory=dict)
    model: str = ""
    variants: dict[str, dict[str, Callable[[], Any]]] = field(default_factory=dict)
    studies_on: str = ""
    modules: tuple[str, ...] = ()


TASKS: dict[str, TaskEntry] = {e.name: e for e in (
    TaskEntry("classification", "ResNet-style classifier and feature extractor; pooling variants", (1, 2, 16),
              "ready", {"tiny": classification.tiny, "standard": classification.standard}, "resnet"),
    TaskEntry("augmentation", "torchvision v2 against Keras preprocessing layers: op parity, ablation, throughput",
              (4,), "ready", {"tiny": augmentation.tiny, "standard": augmentation.standard}, "resnet"),
    TaskEntry("transfer_learning", "the classifier's backbone frozen or fine-tuned on digits, faces and textures",
              (3, 18), "ready", {"tiny": transfer_learning.tiny, "standard": transfer_learning.standard}, "finetune"),
    TaskEntry("detection", "anchors; SSD-, Faster R-CNN- and YOLO-style detectors", (5, 19, 23), "ready",
              {"tiny": detection.tiny, "standard": detection.standard}, "ssd",
              {"yolo": {"tiny": detection.tiny_yolo, "standard": detection.standard_yolo},
               "faster_rcnn": {"tiny": detection.tiny_faster_rcnn, "standard": detection.standard_faster_rcnn}}),
    TaskEntry("semantic_segmentation", "FCN, U-Net and atrous / DeepLab-style segmentation", (7, 20, 21),
              "ready",
              {"tiny": semantic_segmentation.tiny, "standard": semantic_segmentation.standard}, "fcn",
              {"unet": {"tiny": semantic_segmentation.tiny_unet, "standard": semantic_segmentation.standard_unet},
               "deeplab": {"tiny": semantic_segmentation.tiny_deeplab,
                           "standard": semantic_segmentation.standard_deeplab}}),
    TaskEntry("instance_segmentation", "Mask R-CNN-style instance segmentation", (7, 21, 24), "ready",
              {"tiny": instance_segmentation.tiny, "standard": instance_segmentation.standard}, "mask_rcnn"),
    TaskEntry("tracking", "SiamFC-style Siamese tracker", (6, 22)),
    TaskEntry("ocr", "CRNN with CTC loss, greedy and beam decoding, text lines in real fonts", (8, 25), "ready",
              {"tiny": ocr.tiny, "standard": ocr.standard}, "crnn"),
    TaskEntry("embedding", "metric-learned embeddings and retrieval", (9, 26)),
    TaskEntry("distillation", "knowledge distillation: the classifier as teacher of a 10x smaller student", (10, 27),
              "ready", {"tiny": distillation.tiny, "standard": distillation.standard}, "student"),
    TaskEntry("class_imbalance", "long-tailed data and rebalancing methods", (17,)),
    TaskEntry("pooling", "max, average and L2 pooling compared", (16,)),
    TaskEntry("robustness", "occlusion and illumination robustness", (15,)),
    TaskEntry("distributed", "tf.distribute and torch DDP on the classification model, proven equivalent",
              (12, 14, 29), "ready", {"tiny": classification.tiny, "standard": classification.standard}, "resnet",
              studies_on="classification", modules=("data_parallel.py",)),
)}


def check_task(name: str) -> TaskEntry:
    """The registry entry of ``name``; a clear error for an unknown or unbuilt task."""
    if name not in TASKS:
        raise SpecError(f"unknown task {name!r}; expected one of {sorted(TASKS)}")
    entry = TASKS[name]
    if entry.status not in RUNNABLE:
        ready = sorted(n for n, e in TASKS.items() if e.status in RUNNABLE)
        raise SpecError(f"task {name!r} is {entry.status} and has no implementation yet; tasks that run: {ready}")
    return entry


def check_framework(name: str) -> str:
    if name not in FRAMEWORKS:
        raise SpecError(f"unknown framework {name!r}; expected one of {list(FRAMEWORKS)}")
    return name


def get_spec(task: str, preset: str = "standard", variant: str | None = None) -> Any:
    """The spec of ``task`` at ``preset`` (``tiny`` for tests, ``standard`` for the report); with
    ``variant``, the spec of that variant of the task (``TaskEntry.variants``)."""
    entry = check_task(task)
    presets = entry.presets
    if variant is not None:
        if variant not in entry.variants:
            raise SpecError(f"unknown variant {variant!r} of task {task!r}; expected one of {sorted(entry.variants)}")
        presets = entry.variants[variant]
    if preset not in presets:
        raise SpecError(f"unknown preset {preset!r} for task {task!r}; expected one of {sorted(presets)}")
    return presets[preset]()


def run_name(task: str, variant: str | None = None) -> str:
    """The key of one model's results in the report: the task, or ``<task>.<variant>``."""
    return task if variant is None else f"{task}.{variant}"


def split_run_name(name: str) -> tuple[str, str | None]:
    """Inverse of ``run_name``: ``"detection.yolo"`` -> ``("detection", "yolo")``."""
    task, _, variant = name.partition(".")
    return task, variant or None


def model_name(task: str, variant: str | None = None) -> str:
    """The name of the model a run builds: the task's main model, or the variant's key."""
    return variant if variant is not None else check_task(task).model


def twin_task(task: str) -> str:
    """The task whose twins build ``task``'s models: itself, or for a study-only task the one it studies."""
    return check_task(task).studies_on or task


def ready_tasks() -> list[str]:
    return [n for n, e in TASKS.items() if e.status == "ready"]


__all__ = ["FRAMEWORKS", "PRESETS", "RUNNABLE", "STATUSES", "TASKS", "TaskEntry", "ParityTolerances", "SpecError",
           "TrainSpec", "check_framework", "check_task", "get_spec", "model_name", "ready_tasks", "run_name", "spec_key",
           "spec_to_dict", "split_run_name", "twin_task"]
