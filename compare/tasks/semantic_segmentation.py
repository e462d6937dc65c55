"""The semantic-segmentation task's harness plug-in (seed answers 7 and 20)."""

from __future__ import annotations

from . import TaskPlugin

PLUGIN = TaskPlugin()
