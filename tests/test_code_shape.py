"""The code shape of DESIGN.md, read from the source (``ast``, ``tokenize``):

- imports run one way: ``_cli`` -> ``_pipeline`` -> ``_report`` -> ``pl``/``get`` -> ``tl``/``pp`` -> ``_core`` ->
  ``sig``/``_matrix`` -> ``_keys``; function-local imports included, so a back-edge hidden in a function fails too;
- no decision is made by matching the text of an exception or a warning (typed errors and warnings instead);
- every ``tmt_`` key the package writes is named in ``_keys``.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "tmetoolkit"

# a part may import parts of its own rank or below, never above
RANK = {"_keys": 0, "_utils": 0, "_version": 0,
        "sig": 1, "_matrix": 1,
        "_core": 2,
        "pp": 3, "tl": 3, "datasets": 3,
        "get": 4, "pl": 4,
        "_report_text": 5, "_report": 5,
        "_pipeline": 6,
        "_cli": 7, "__init__": 8, "__main__": 8}


def _part(module: str) -> str:
    """``tmetoolkit.tl._score`` -> ``tl``; ``tmetoolkit`` (the package itself) -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _is_module(name: str) -> bool:
    return (PACKAGE / f"{name}.py").is_file() or (PACKAGE / name / "__init__.py").is_file()


def imports(source: str, module: str, is_package: bool = False) -> list[tuple[str, int]]:
    """Every ``tmetoolkit`` module ``source`` (the text of ``module``) imports, with its line."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names if a.name.split(".")[0] == "tmetoolkit"]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            if target.split(".")[0] != "tmetoolkit":
                continue
            if target == "tmetoolkit":  # from . import tl, _keys: each name is a module
                # __version__ is set before the package imports its parts, so any part may read it
                out += [(f"tmetoolkit.{a.name}" if _is_module(a.name) else target, node.lineno)
                        for a in node.names if a.name != "__version__"]
            else:
                out.append((target, node.lineno))
    return out


def back_edges(source: str, module: str, is_package: bool = False) -> list[str]:
    """Imports of ``module`` that run up the layers."""
    here = _part(module)
    return [f"{module}:{line} imports {target}" for target, line in imports(source, module, is_package)
            if _part(target) != here and RANK[_part(target)] > RANK[here]]


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        is_package = path.name == "__init__.py"
        name = ".".join(rel.parts[:-1] if is_package else rel.parts)
        yield name, path.read_text(encoding="utf-8"), is_package


def test_every_part_has_a_rank():
    parts = {_part(name) for name, _, _ in _modules()}
    assert parts <= set(RANK), sorted(parts - set(RANK))


def test_imports_run_one_way():
    found = [e for name, source, pkg in _modules() for e in back_edges(source, name, pkg)]
    assert not found, "\n".join(found)


@pytest.mark.parametrize(("module", "source", "target"), [
    ("tmetoolkit.tl._annotate", "def f():\n    from ..pl._palettes import state_colors\n", "tmetoolkit.pl._palettes"),
    ("tmetoolkit.tl._compare", "from ..get import sample_table\n", "tmetoolkit.get"),
    ("tmetoolkit._matrix", "def f():\n    from .tl._kernels import column_sums_csr\n", "tmetoolkit.tl._kernels"),
    ("tmetoolkit._core.scoring.kernels", "from ... import tl\n", "tmetoolkit.tl"),
    ("tmetoolkit.tl._score", "import tmetoolkit.pl\n", "tmetoolkit.pl"),
])
def test_back_edges_are_seen(module, source, target):
    # the edges this layout removed, written back: each is found, including inside a function
    found = back_edges(source, module)
    assert len(found) == 1 and found[0].endswith(f"imports {target}"), found

def test_forward_edges_pass():
    assert imports("from .._matrix import get_matrix\n", "tmetoolkit.tl._score") == [("tmetoolkit._matrix", 1)]
    assert back_edges("from .._matrix import get_matrix\nfrom .. import _keys\n", "tmetoolkit.tl._score") == []
    assert back_edges("from ..tl._tables import sample_table\n", "tmetoolkit.get._tables") == []


def _text_matches(source: str) -> list[int]:
    """Lines that decide by the text of an exception or a warning: ``"..." in str(e)`` for ``e`` bound by an
    ``except`` clause, or a comparison with ``w.message``."""
    tree = ast.parse(source)
    caught = {h.name for h in ast.walk(tree) if isinstance(h, ast.ExceptHandler) and h.name}
    lines = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Compare) and any(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops)):
            continue
        for side in (node.left, *node.comparators):
            text_of = (isinstance(side, ast.Call) and isinstance(side.func, ast.Name) and side.func.id == "str"
                       and side.args and side.args[0])
            inner = text_of or side
            if ((isinstance(inner, ast.Name) and text_of and inner.id in caught)
                    or (isinstance(inner, ast.Attribute) and inner.attr == "message")):
                lines.append(node.lineno)
    return lines


def test_no_decision_by_message_text():
    found = [f"{name}:{line}" for name, source, _ in _modules() for line in _text_matches(source)]
    assert not found, found


def test_message_matching_is_seen():
    source = "try:\n    f()\nexcept ValueError as e:\n    if 'pass layer=' in str(e):\n        g()\n"
    assert _text_matches(source) == [4]
    assert _text_matches("for w in caught:\n    if 'too few genes' in str(w.message):\n        pass\n") == [2]
    assert _text_matches("if 'x' in str(value):\n    pass\n") == []


# modules reshaped by work in progress when the key registry grew; their literals move to _keys once it lands
KEYS_TO_MOVE: set[str] = set()


def _key_literals(source: str) -> list[tuple[int, str]]:
    """String literals in code that are a whole ``tmt_`` key (docstrings and messages that mention one are not)."""
    import io
    import re
    import tokenize

    return [(t.start[0], t.string) for t in tokenize.generate_tokens(io.StringIO(source).readline)
            if t.type == tokenize.STRING and re.fullmatch(r"""(["'])tmt_\w*\1""", t.string)]


def test_every_key_comes_from_the_registry():
    found = [f"{name}:{line} {text}" for name, source, _ in _modules()
             if name != "tmetoolkit._keys" and name not in KEYS_TO_MOVE for line, text in _key_literals(source)]
    assert not found, "\n".join(found)
    assert _key_literals('x = adata.obs["tmt_lineage"]\n"""Writes ``obs["tmt_state"]``."""\n') == [(1, '"tmt_lineage"')]


# the cores take arrays and tables; AnnData (and scanpy, which works on it) stays in the runners above them
ANNDATA_LIBRARIES = {"anndata", "scanpy"}
# cores allowed to import them anyway: none (annotate's runner chooses the variable genes with scanpy and passes
# them in)
ANNDATA_IN_CORE: set[str] = set()


def _anndata_imports(source: str) -> list[int]:
    """Lines importing ``anndata`` or ``scanpy``, at module level or inside a function."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
        if any(n.split(".")[0] in ANNDATA_LIBRARIES for n in names):
            lines.append(node.lineno)
    return sorted(lines)


def test_cores_never_import_anndata():
    found = [f"{name}:{line}" for name, source, _ in _modules()
             if _part(name) == "_core" and name not in ANNDATA_IN_CORE for line in _anndata_imports(source)]
    assert not found, found
    assert _anndata_imports("def f():\n    import scanpy as sc\nfrom anndata import AnnData\nimport numpy\n") == [2, 3]
    assert _anndata_imports("from .anndata import x\n") == []
