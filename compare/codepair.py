"""The paired-code view: each pytorch_impl module beside its tensorflow_impl twin.

Modules are aligned by their top-level classes and functions (same names by
the twin contract); each side is measured in lines of code (no blanks, no
comments, no docstrings) and in calls into its framework's API.
"""

from __future__ import annotations

import ast
import io
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIDES = {"torch": "pytorch_impl", "tensorflow": "tensorflow_impl"}
# Names through which each twin reaches its framework.
FRAMEWORK_ROOTS = {"torch": {"torch", "nn", "F", "torchvision"}, "tensorflow": {"tf", "keras", "ops", "layers"}}


@dataclass
class Block:
    name: str
    kind: str          # class, function, or module (imports and constants)
    source: str
    loc: int
    api_calls: int


@dataclass
class ModulePair:
    path: str                                   # relative to the impl package, e.g. classification/model.py
    blocks: dict[str, list[Block | None]] = field(default_factory=dict)  # name -> [torch, tensorflow]
    loc: dict[str, int] = field(default_factory=dict)
    api_calls: dict[str, int] = field(default_factory=dict)


def code_lines(source: str) -> int:
    """Lines holding code: not blank, not only a comment, not part of a docstring."""
    tree = ast.parse(source)
    doc_lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = getattr(node, "body", [])
            if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                    and isinstance(body[0].value.value, str):
                doc_lines.update(range(body[0].lineno, body[0].end_lineno + 1))
    lines: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type not in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                            tokenize.ENDMARKER):
            lines.update(range(tok.start[0], tok.end[0] + 1))
    return len(lines - doc_lines)


def api_calls(node: ast.AST, framework: str) -> int:
    """Calls whose callee is reached through the framework (``nn.Conv2d(...)``, ``tf.function(...)``)."""
    roots, count = FRAMEWORK_ROOTS[framework], 0
    for call in (n for n in ast.walk(node) if isinstance(n, ast.Call)):
        func = call.func
        while isinstance(func, ast.Attribute):
            func = func.value
        if isinstance(func, ast.Name) and func.id in roots and isinstance(call.func, ast.Attribute):
            count += 1
    return count


def _blocks(path: Path, framework: str) -> tuple[list[Block], int, int]:
    source = path.read_text()
    tree = ast.parse(source)
    lines = source.splitlines()
    blocks, header = [], []
    for node in tree.body:
        text = "\n".join(lines[node.lineno - 1 - len(getattr(node, "decorator_list", [])):node.end_lineno])
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            blocks.append(Block(node.name, "class" if isinstance(node, ast.ClassDef) else "function", text,
                                code_lines(text) if text.strip() else 0, api_calls(node, framework)))
        else:
            header.append(text)
    head = "\n".join(header)
    blocks.insert(0, Block("(module)", "module", head, code_lines(head) if head.strip() else 0,
                           api_calls(ast.parse(head), framework) if head.strip() else 0))
    return blocks, code_lines(source), api_calls(tree, framework)


def module_pairs() -> list[ModulePair]:
    """Every twin module pair, blocks aligned by name (torch order first, then TF-only names)."""
    rel_paths = sorted({p.relative_to(ROOT / pkg).as_posix() for pkg in SIDES.values()
                        for p in (ROOT / pkg).rglob("*.py") if "__pycache__" not in p.parts})
    pairs = []
    for rel in rel_paths:
        pair = ModulePair(rel)
        per_side: dict[str, dict[str, Block]] = {}
        order: list[str] = []
        for fw, pkg in SIDES.items():
            path = ROOT / pkg / rel
            if not path.exists():
                per_side[fw], pair.loc[fw], pair.api_calls[fw] = {}, 0, 0
                continue
            blocks, loc, calls = _blocks(path, fw)
            per_side[fw], pair.loc[fw], pair.api_calls[fw] = {b.name: b for b in blocks}, loc, calls
            order += [b.name for b in blocks if b.name not in order]
        pair.blocks = {name: [per_side["torch"].get(name), per_side["tensorflow"].get(name)] for name in order}
        pairs.append(pair)
    return pairs


def function_loc(rel: str, name: str) -> dict[str, int]:
    """Lines of code of one named top-level definition in each twin (0 where absent)."""
    out = {}
    for fw, pkg in SIDES.items():
        path = ROOT / pkg / rel
        blocks = {b.name: b for b in _blocks(path, fw)[0]} if path.exists() else {}
        out[fw] = blocks[name].loc if name in blocks else 0
    return out


def summary() -> dict:
    """Totals per side and per module, for the results and the claims."""
    pairs = module_pairs()
    return {
        "modules": [{"path": p.path, "loc": p.loc, "api_calls": p.api_calls} for p in pairs],
        "total_loc": {fw: sum(p.loc[fw] for p in pairs) for fw in SIDES},
        "total_api_calls": {fw: sum(p.api_calls[fw] for p in pairs) for fw in SIDES},
    }
