"""The twins stay twins: same modules, same public names; shared/ never imports a framework."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FRAMEWORK_MODULES = {"torch", "torchvision", "tensorflow", "keras", "tf_keras", "tf2onnx", "onnxruntime",
                     "tensorflow_model_optimization", "torchao", "triton", "ai_edge_litert", "keras_cv"}


def _modules(pkg: str) -> set[str]:
    return {p.relative_to(ROOT / pkg).with_suffix("").as_posix() for p in (ROOT / pkg).rglob("*.py")
            if "__pycache__" not in p.parts}


def test_same_modules_in_both_twins():
    torch_side, tf_side = _modules("pytorch_impl"), _modules("tensorflow_impl")
    assert torch_side == tf_side, (f"only in pytorch_impl: {sorted(torch_side - tf_side)}; "
                                   f"only in tensorflow_impl: {sorted(tf_side - torch_side)}")


def _public_names(module) -> set[str]:
    names = set(getattr(module, "__all__", []))
    for name, value in vars(module).items():
        if name.startswith("_") or inspect.ismodule(value):
            continue
        defined_here = getattr(value, "__module__", None) == module.__name__
        if defined_here or (module.__name__.endswith("layers") and (inspect.isclass(value) or callable(value))):
            names.add(name)
    return names


@pytest.mark.parametrize("module", sorted(_modules("pytorch_impl")))
def test_same_public_names(module):
    dotted = module.replace("/", ".").removesuffix(".__init__").removesuffix("__init__")
    suffix = f".{dotted}" if dotted else ""
    torch_mod = importlib.import_module(f"pytorch_impl{suffix}")
    tf_mod = importlib.import_module(f"tensorflow_impl{suffix}")
    a, b = _public_names(torch_mod), _public_names(tf_mod)
    # Framework entry points imported for use, not defined by the twin.
    ignore = {"torch", "tf", "keras", "nn", "F", "ops", "np", "annotations"}
    # Names one framework alone can have, each with its reason in the module (FRAMEWORK_SPECIFIC).
    ignore |= {"FRAMEWORK_SPECIFIC"} | set(getattr(torch_mod, "FRAMEWORK_SPECIFIC", {})) \
        | set(getattr(tf_mod, "FRAMEWORK_SPECIFIC", {}))
    for mod in (torch_mod, tf_mod):
        assert all(isinstance(r, str) and len(r) > 20 for r in getattr(mod, "FRAMEWORK_SPECIFIC", {}).values())
    a, b = a - ignore, b - ignore
    assert a == b, f"{module}: only in pytorch_impl: {sorted(a - b)}; only in tensorflow_impl: {sorted(b - a)}"


def test_shared_imports_no_framework():
    offenders = []
    for path in (ROOT / "shared").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in FRAMEWORK_MODULES]
    assert not offenders, offenders


def test_no_pickle_loading_of_weights():
    hits = []
    for pkg in ("shared", "pytorch_impl", "tensorflow_impl", "compare"):
        for path in (ROOT / pkg).rglob("*.py"):
            text = path.read_text()
            if "torch.load(" in text and "weights_only=True" not in text:
                hits.append(str(path.relative_to(ROOT)))
            if "pickle.load" in text:
                hits.append(str(path.relative_to(ROOT)))
    assert not hits, hits
