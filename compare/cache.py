"""Trained weights and exports, cached by a key of the spec and the code.

A run that is killed and started again finds what the first one finished
(every file is written atomically) and redoes only the rest. Editing any
source file under shared/, pytorch_impl/ or tensorflow_impl/, or changing the
spec, changes the key, so stale models are never reused.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
from pathlib import Path
from typing import Any, Callable

from shared.specs import spec_key
from shared.weights import write_atomic

ROOT = Path(__file__).resolve().parent.parent
CODE_PACKAGES = ("shared", "pytorch_impl", "tensorflow_impl")


@functools.lru_cache(maxsize=1)
def code_key() -> str:
    """Hash of every source file the models depend on."""
    digest = hashlib.sha256()
    for pkg in CODE_PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            digest.update(path.relative_to(ROOT).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def recipe_name(filename: str, settings: dict, *makers) -> str:
    """``filename`` tagged with a short hash of the recipe that makes it, where that recipe lives outside the
    packages ``code_key`` hashes: the harness's settings (calibration images, fine-tune steps, learning rate, the
    CPU's int8 weight range) and the source of the harness modules that do the work (``makers``). Changing any of
    them names a new file, so a calibrated artifact is never served from an older recipe:
    ``model-int8.tflite`` -> ``model-int8-3f9c0a1b.tflite``."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for module in makers:
        digest.update(Path(inspect.getsourcefile(module)).read_bytes())
    path = Path(filename)
    return f"{path.stem}-{digest.hexdigest()[:8]}{path.suffix}"


class TaskCache:
    """The cache folder of one (task, preset, spec, code) combination.

    depends_on: further specs whose models this one's are made from (a detector that starts from another's
    trained body): a change to any of them changes the key too.
    """

    def __init__(self, root: str | Path, task: str, preset: str, spec, depends_on: tuple = ()):
        key = spec_key(spec)
        if depends_on:
            key = hashlib.sha256(" ".join([key, *map(spec_key, depends_on)]).encode()).hexdigest()
        self.dir = Path(root) / f"{task}-{preset}-{key[:10]}-{code_key()}"
        # Nothing cached yet (no folder, or the empty one a run killed before its first file leaves): a cold run.
        self.fresh = not self.dir.exists() or not any(self.dir.iterdir())
        self.dir.mkdir(parents=True, exist_ok=True)

    def path(self, name: str) -> Path:
        return self.dir / name

    def has(self, name: str) -> bool:
        return self.path(name).exists()

    def json(self, name: str, make: Callable[[], Any]) -> tuple[Any, bool]:
        """Cached JSON value of ``name`` (made and stored when missing); (value, was_cached)."""
        path = self.path(name)
        if path.exists():
            return json.loads(path.read_text()), True
        value = make()
        write_atomic(path, json.dumps(value, indent=1))
        return value, False

    def artifact(self, name: str, make: Callable[[Path], Any]) -> tuple[Path, bool]:
        """Path of artifact ``name`` (a file or folder), made by ``make(path)`` when missing."""
        path = self.path(name)
        if path.exists():
            return path, True
        make(path)
        return path, False
