"""The classification task's harness plug-in: no studies or claims of its own (its seed answers' claims,
13 and 30 and quantization's 11 and 28, are the generic ones of compare.claims), no post-processing step,
and the reference workloads: the ports of torchvision's ResNet-18 and ResNet-50 that its twins build
(compare.workloads times them through every backend)."""

from __future__ import annotations

from shared.specs.classification import resnet18, resnet50

from . import TaskPlugin

PLUGIN = TaskPlugin(workloads={"resnet18": resnet18, "resnet50": resnet50})

__all__ = ["PLUGIN"]
