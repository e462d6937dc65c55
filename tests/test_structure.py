"""The twins stay twins: same modules, same public names; shared/ never imports a framework."""

from __future__ import annotations

import ast
import re
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


# -- paired modules define the same things in the same order ------------------------------------------------

# Method names that mean the same call in both frameworks (torch nn.Module.forward, Keras Layer.call), and methods
# only Keras has for a reason every Keras model shares: get_config / from_config make a .keras file loadable
# in safe mode (no pickled code).
SAME_METHOD = {"call": "forward", "__call__": "forward"}
KERAS_ONLY_METHODS = {"get_config", "from_config"}


def definitions(path: Path) -> list[tuple[str, tuple[str, ...] | None]]:
    """The public top-level classes, functions and aliases (``Conv2d = nn.Conv2d``) of ``path`` in order, each
    class with its public methods in order (private helpers are each framework's own business)."""
    out = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and isinstance(node.value, (ast.Name, ast.Attribute)):
            out += [(t.id, None) for t in node.targets if isinstance(t, ast.Name) and t.id[:1].isupper()
                    and not t.id.isupper() and not t.id.startswith("_")]
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
            methods = None
            if isinstance(node, ast.ClassDef):
                methods = tuple(SAME_METHOD.get(m.name, m.name) for m in node.body
                                if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef))
                                and (not m.name.startswith("_") or m.name in ("__init__", "__call__")))
            out.append((node.name, methods))
    return out


def _declared(module_path: Path) -> dict[str, str]:
    """The module's FRAMEWORK_SPECIFIC: names (or ``Class.method``) only one twin has, each with its reason."""
    for node in ast.parse(module_path.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "FRAMEWORK_SPECIFIC" for t in node.targets):
            return ast.literal_eval(node.value)
    return {}


def _compared(path: Path, declared: set[str], keras: bool) -> list[tuple[str, tuple[str, ...] | None]]:
    out = []
    for name, methods in definitions(path):
        if name in declared:
            continue
        if methods is not None:
            methods = tuple(m for m in methods if f"{name}.{m}" not in declared
                            and not (keras and m in KERAS_ONLY_METHODS))
        out.append((name, methods))
    return out


def paired_definition_differences(torch_path: Path, tf_path: Path) -> list[str]:
    """Every difference between two paired modules' ordered definitions that neither module declares."""
    declared = set(_declared(torch_path)) | set(_declared(tf_path))
    a, b = _compared(torch_path, declared, False), _compared(tf_path, declared, True)
    problems = []
    names_a, names_b = [n for n, _ in a], [n for n, _ in b]
    if names_a != names_b:
        only_a, only_b = sorted(set(names_a) - set(names_b)), sorted(set(names_b) - set(names_a))
        problems.append(f"definitions differ: only in pytorch_impl {only_a}, only in tensorflow_impl {only_b}; "
                        f"order pytorch_impl {names_a} vs tensorflow_impl {names_b}")
    methods_b = dict(b)
    for name, methods in a:
        # A class on one side only and an alias on the other: one framework's own layer already has the
        # shared signature (torch's nn.Conv2d) and the other adapts its own to it (a Keras Conv2D subclass).
        if name in methods_b and None not in (methods, methods_b[name]) and methods != methods_b[name]:
            problems.append(f"class {name}: methods {methods} vs {methods_b[name]}")
    return problems


@pytest.mark.parametrize("module", sorted(_modules("pytorch_impl")))
def test_paired_modules_define_the_same_things_in_the_same_order(module):
    torch_path, tf_path = ROOT / "pytorch_impl" / f"{module}.py", ROOT / "tensorflow_impl" / f"{module}.py"
    for path in (torch_path, tf_path):
        assert all(isinstance(r, str) and len(r) > 20 for r in _declared(path).values()), \
            f"{path}: every FRAMEWORK_SPECIFIC entry needs its reason"
    assert not paired_definition_differences(torch_path, tf_path), \
        f"{module}: " + "; ".join(paired_definition_differences(torch_path, tf_path))


def test_the_order_check_catches_an_undeclared_difference(tmp_path):
    torch_side, tf_side = tmp_path / "torch.py", tmp_path / "tf.py"
    torch_side.write_text("class Head:\n    def __init__(self): ...\n    def forward(self, x): ...\n\n"
                          "def build_model(spec): ...\n\ndef predict(model, x): ...\n")
    tf_side.write_text("class Head:\n    def __init__(self): ...\n    def call(self, x): ...\n"
                       "    def get_config(self): ...\n\ndef build_model(spec): ...\n\ndef predict(model, x): ...\n")
    assert paired_definition_differences(torch_side, tf_side) == []  # forward = call; Keras' config methods
    tf_side.write_text(tf_side.read_text().replace("def build_model(spec): ...\n\ndef predict(model, x): ...",
                                                   "def predict(model, x): ...\n\ndef build_model(spec): ..."))
    assert "order pytorch_impl ['Head', 'build_model', 'predict']" in paired_definition_differences(
        torch_side, tf_side)[0]
    tf_side.write_text(tf_side.read_text() + "\ndef tf_only(): ...\n")
    assert "only in tensorflow_impl ['tf_only']" in paired_definition_differences(torch_side, tf_side)[0]
    tf_side.write_text(tf_side.read_text() + '\nFRAMEWORK_SPECIFIC = {"tf_only": "a reason long enough to read"}\n')
    tf_side.write_text(tf_side.read_text().replace("def predict(model, x): ...\n\ndef build_model(spec): ...",
                                                   "def build_model(spec): ...\n\ndef predict(model, x): ..."))
    assert paired_definition_differences(torch_side, tf_side) == []


# -- no switch on a task or model in the generic harness -----------------------------------------------------

# The generic modules: the harness, the report, the dispatchers of shared/ and each twin's task-free modules.
# Task code lives in compare/tasks/<task>.py, shared/{specs,data,metrics}/<task>.py and the twins' <task>/.
GENERIC = sorted({*(ROOT / "compare").glob("*.py"), *(ROOT / "compare" / "report").glob("*.py"),
                  ROOT / "compare" / "tasks" / "__init__.py", ROOT / "shared" / "data" / "__init__.py",
                  ROOT / "shared" / "data" / "validate.py", ROOT / "shared" / "metrics" / "__init__.py",
                  ROOT / "shared" / "weights.py", ROOT / "shared" / "cpu.py",
                  *(ROOT / "pytorch_impl").glob("*.py"), *(ROOT / "tensorflow_impl").glob("*.py")})


def task_and_model_names() -> set[str]:
    from shared.specs import TASKS

    return set(TASKS) | {e.model for e in TASKS.values() if e.model} | {v for e in TASKS.values() for v in e.variants}


PROJECT_PACKAGES = ("shared", "compare", "pytorch_impl", "tensorflow_impl")


def _project_module(module: str | None, level: int) -> bool:
    """An import of this project's code (relative, or one of its packages); a library's module path such as
    ``torch.distributed`` is no switch on the task of that name."""
    return level > 0 or (module or "").split(".")[0] in PROJECT_PACKAGES


def names_in(source: str, names: set[str]) -> list[str]:
    """Where ``source`` names one of ``names`` in code: an identifier, attribute, argument or imported module
    holding it as a word (``detection_parity``, ``shared.specs.classification``), or a string that is the
    name or starts a run name with it (``"detection"``, ``"detection.yolo"``). Prose (comments, docstrings,
    messages) may mention a task; code may not switch on one."""
    tree = ast.parse(source)
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    hits = []
    for node in ast.walk(tree):
        words, strings = [], []
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            strings = [node.value]
        elif isinstance(node, ast.Name):
            words = [node.id]
        elif isinstance(node, ast.Attribute):
            words = [node.attr]
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            words = [node.name]
        elif isinstance(node, ast.arg):
            words = [node.arg]
        elif isinstance(node, ast.ImportFrom) and _project_module(node.module, node.level):
            words = [node.module or "", *(a.name for a in node.names)]
        elif isinstance(node, ast.Import):
            words = [a.name for a in node.names if _project_module(a.name, 0)]
        for name in names:
            word = re.compile(rf"(?<![A-Za-z0-9]){re.escape(name)}(?![A-Za-z0-9])")
            hits += [f"line {node.lineno}: {w!r}" for w in words if word.search(w)]
            hits += [f"line {node.lineno}: {s!r}" for s in strings if s == name or s.startswith(f"{name}.")]
    return hits


@pytest.mark.parametrize("path", GENERIC, ids=lambda p: str(p.relative_to(ROOT)))
def test_generic_modules_name_no_task_or_model(path):
    hits = names_in(path.read_text(), task_and_model_names())
    assert not hits, f"{path.relative_to(ROOT)} names a task or model (move it to the task's own files): {hits}"


def test_the_name_check_catches_a_switch():
    names = {"detection", "yolo"}
    assert names_in('if spec.task == "detection":\n    pass\n', names) == ["line 1: 'detection'"]
    assert names_in("from shared.data.detection import load\n", names)
    assert names_in("def yolo_boxes(x): ...\n", names) and names_in('run = "detection.yolo"\n', names)
    assert not names_in('"""A detection docstring."""\n# a yolo comment\nerror = "no detection here"\n', names)
    assert not names_in("import torch.distributed as dist\nfrom torch.distributed import nn\n", {"distributed"})
    assert names_in("from .distributed import x\nimport compare.distributed\n", {"distributed"})
