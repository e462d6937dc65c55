"""Framework-free specification of every TwinVision task.

Nothing under ``shared`` imports torch or tensorflow: both twins import it, and
a test walks this package's imports to keep it that way.
"""

import importlib


def task_module(package: str, task: str, expected: str):
    """``<package>.<task>``: where a task plugs in by adding its own module (its data, metrics, harness plug-in);
    a clear error naming the file and what it must define (``expected``) when the task has none."""
    try:
        return importlib.import_module(f"{package}.{task}")
    except ModuleNotFoundError as err:
        if err.name != f"{package}.{task}":
            raise
        raise ValueError(f"no {package} module for task {task!r} (expected {package.replace('.', '/')}/{task}.py "
                         f"with {expected})") from None
