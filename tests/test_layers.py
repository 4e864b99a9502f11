"""The layers import only downward: the core stages never import the facade or a shell, and no deepkb module
imports itself back through others. Read from the source (ast), so a lazy import inside a function counts too."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "deepkb"

# The data's path through the core: none of these may reach up to the facade, a shell or the conversation.
CORE = ["loaders", "chunker", "store", "storage", "vector_index", "embedders", "search", "ingest", "paths", "config"]
ABOVE_CORE = ["kb", "cli", "tui", "server", "conversation", "watch"]


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    base = PACKAGE.parent.joinpath(*name.split("."))
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(deepkb module, only for type checking) for every import in the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    typing_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            typing_only.update(id(n) for child in node.body for n in ast.walk(child))
    found: list[tuple[str, bool]] = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [
                f"{node.module}.{alias.name}" if _is_module(f"{node.module}.{alias.name}") else node.module
                for alias in node.names
            ]
        found += [(name, id(node) in typing_only) for name in names if name.split(".")[0] == "deepkb"]
    return found


def _graph(with_typing: bool) -> dict[str, set[str]]:
    """deepkb module -> the deepkb modules it imports (those under `if TYPE_CHECKING:` only `with_typing`)."""
    key = (PACKAGE, with_typing)
    if key not in _GRAPHS:
        graph: dict[str, set[str]] = {}
        for path in sorted(PACKAGE.rglob("*.py")):
            name = _module_name(path)
            graph[name] = {target for target, typing in _imports(path) if with_typing or not typing} - {name}
        _GRAPHS[key] = graph
    return _GRAPHS[key]


_GRAPHS: dict[tuple[Path, bool], dict[str, set[str]]] = {}  # read once per package


def _under(module: str, layer: str) -> bool:
    full = f"deepkb.{layer}"
    return module == full or module.startswith(full + ".")


@pytest.mark.parametrize("layer", CORE)
def test_the_core_never_imports_the_facade_or_a_shell(layer):
    graph = _graph(with_typing=True)
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in graph.items()
        if _under(module, layer)
        for target in targets
        if any(_under(target, above) for above in ABOVE_CORE)
    )
    assert wrong == []


def test_answer_never_imports_the_conversation():
    graph = _graph(with_typing=True)
    assert not any(_under(t, "conversation") for t in graph["deepkb.answer"])
    assert "deepkb.answer" in graph["deepkb.conversation"]  # the conversation is built on the answer pieces


def test_no_module_imports_itself_back():
    graph = _graph(with_typing=False)
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            if target.startswith(module + "."):  # a package importing its own parts is not a cycle
                continue
            if state.get(target) == 1:
                cycles.append(path[path.index(target) :] + [target])
            elif target in graph and not state.get(target):
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if not state.get(module):
            visit(module, [module])
    assert cycles == []


def test_the_checker_sees_a_cycle_and_an_upward_import(tmp_path, monkeypatch):
    """The checks above can fail: a made-up package with both faults is caught."""
    fake = tmp_path / "deepkb"
    (fake / "loaders").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "loaders" / "__init__.py").write_text("from deepkb.kb import KnowledgeBase\n")
    (fake / "kb.py").write_text("from deepkb import chunker\n")
    (fake / "chunker.py").write_text("def f():\n    from deepkb.kb import KnowledgeBase\n")
    (fake / "answer.py").write_text("")
    (fake / "conversation.py").write_text("from deepkb.answer import x\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    with pytest.raises(AssertionError):
        test_the_core_never_imports_the_facade_or_a_shell("loaders")
    with pytest.raises(AssertionError):
        test_no_module_imports_itself_back()
