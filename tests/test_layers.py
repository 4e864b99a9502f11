"""The layers import only downward: every deepkb module belongs to one layer group, each group may import only the
groups listed for it, and no module imports itself back through others. Read from the source (ast), so a lazy
import inside a function, a relative import and an `importlib.import_module("deepkb...")` all count."""

from __future__ import annotations

import ast
import shutil
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "deepkb"

# Each group: the deepkb modules (or packages) in it. A module belongs to the group of its longest matching name.
GROUPS: dict[str, list[str]] = {
    "base": [
        "deepkb",
        "errors",
        "paths",
        "checksum",
        "faults",
        "config",
        "types",
        "scope",
        "display",
        "storage.errors",
    ],
    "loaders": ["loaders"],
    "ingest.parts": ["ingest.scan", "ingest.chunker"],
    "embedders": ["embedders"],
    "llm": ["llm"],
    "storage": ["storage"],
    "ingest": ["ingest", "ingest.reader"],
    "retrieval": ["retrieval"],
    "answer": ["answer"],
    "conversation": ["conversation"],
    "facade": ["kb", "watch", "doctor", "backup"],
    "mcp": ["mcp"],
    "server": ["server"],
    "tui": ["tui"],
    "cli": ["cli", "__main__"],
}
_CORE = ["base", "loaders", "ingest.parts", "embedders", "llm", "storage", "ingest", "retrieval"]
# What each group may import besides itself: the drawing in the README's "Development" section, as data.
ALLOWED: dict[str, set[str]] = {
    "base": set(),
    "loaders": {"base"},
    "ingest.parts": {"base", "loaders"},
    "embedders": {"base"},
    "llm": {"base"},
    "storage": {"base"},
    "ingest": {"base", "loaders", "ingest.parts", "embedders", "storage"},
    "retrieval": {"base", "loaders", "embedders", "storage"},
    "answer": {"base", "retrieval", "llm"},
    "conversation": {"base", "embedders", "storage", "retrieval", "llm", "answer"},
    "facade": {*_CORE, "answer", "conversation"},
    "mcp": {*_CORE, "answer", "conversation", "facade"},  # the MCP tools: a shell like the server and the TUI
    "server": {*_CORE, "answer", "conversation", "facade", "mcp"},  # /mcp mounts them
    "tui": {*_CORE, "answer", "conversation", "facade"},
    "cli": set(GROUPS) - {"cli"},
}


def _module_name(path: Path, package: Path) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str, package: Path) -> bool:
    base = package.parent.joinpath(*name.split("."))
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def _imports(path: Path, package: Path) -> list[tuple[str, bool]]:
    """(deepkb module, only for type checking) for every import in the file, relative and importlib ones too."""
    tree = ast.parse(path.read_text(), filename=str(path))
    here = _module_name(path, package).split(".")
    is_package = path.name == "__init__.py"
    typing_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            typing_only.update(id(n) for child in node.body for n in ast.walk(child))
    found: list[tuple[str, bool]] = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolved against this module's package
                anchor = here if is_package else here[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                module = ".".join([*anchor, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            names = [
                f"{module}.{alias.name}" if _is_module(f"{module}.{alias.name}", package) else module
                for alias in node.names
            ]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            called = ast.unparse(node.func)
            if called in ("importlib.import_module", "import_module", "__import__"):
                names = [str(node.args[0].value)]
        found += [(name, id(node) in typing_only) for name in names if name.split(".")[0] == "deepkb"]
    return found


def _graph(package: Path, with_typing: bool) -> dict[str, set[str]]:
    """deepkb module -> the deepkb modules it imports (those under `if TYPE_CHECKING:` only `with_typing`)."""
    graph: dict[str, set[str]] = {}
    for path in sorted(package.rglob("*.py")):
        name = _module_name(path, package)
        graph[name] = {target for target, typing in _imports(path, package) if with_typing or not typing} - {name}
    return graph


def _group(module: str) -> str | None:
    best: tuple[int, str] | None = None
    for group, members in GROUPS.items():
        for member in members:
            full = "deepkb" if member == "deepkb" else f"deepkb.{member}"
            if module == full or (member != "deepkb" and module.startswith(full + ".")):
                if best is None or len(full) > best[0]:
                    best = (len(full), group)
    return best[1] if best else None


def upward_imports(package: Path) -> list[str]:
    """Every import that a module's group may not make, and every module that belongs to no group."""
    wrong: list[str] = []
    for module, targets in _graph(package, with_typing=True).items():
        group = _group(module)
        if group is None:
            wrong.append(f"{module} belongs to no layer group: add it to GROUPS and the README's drawing")
            continue
        for target in sorted(targets):
            target_group = _group(target)
            if target_group != group and target_group not in ALLOWED[group]:
                wrong.append(f"{module} ({group}) imports {target} ({target_group})")
    return wrong


def import_cycles(package: Path) -> list[list[str]]:
    """Cycles in the run-time import graph, through packages' __init__ modules too."""
    graph = _graph(package, with_typing=False)
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                cycles.append(path[path.index(target) :] + [target])
            elif target in graph and not state.get(target):
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if not state.get(module):
            visit(module, [module])
    return cycles


def test_every_module_imports_only_the_layers_below_it():
    assert upward_imports(PACKAGE) == []


def test_no_module_imports_itself_back():
    assert import_cycles(PACKAGE) == []


def test_the_allowed_imports_form_no_cycle():
    """The drawing itself runs one way: no group may reach itself back through the groups it is allowed."""
    for start in ALLOWED:
        seen, todo = set(), list(ALLOWED[start])
        while todo:
            group = todo.pop()
            assert group != start, f"{start} can reach itself through {sorted(seen)}"
            if group not in seen:
                seen.add(group)
                todo += ALLOWED[group]


def _copy(tmp_path: Path) -> Path:
    copy = tmp_path / "deepkb"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def _inject(copy: Path, module: str, line: str) -> None:
    path = copy / module
    path.write_text(path.read_text() + "\n" + line + "\n")


@pytest.mark.parametrize(
    ("module", "line"),
    [
        ("retrieval/search.py", "from ..kb import KnowledgeBase"),  # relative, from a core module up to the facade
        ("loaders/text.py", "from ..kb import KnowledgeBase"),
        ("storage/catalog.py", "from deepkb.llm import LLM"),  # storage reaching sideways into the model
        ("loaders/html.py", "from .. import answer"),
        (
            "retrieval/excerpt.py",
            "def f():\n    import importlib\n    return importlib.import_module('deepkb.conversation.session')",
        ),
        ("answer/stream.py", "from deepkb.conversation.session import ChatSession"),
        ("embedders/base.py", "from deepkb.tui.app import DeepKBApp"),
    ],
)
def test_an_injected_upward_import_is_caught(tmp_path, module, line):
    copy = _copy(tmp_path)
    assert upward_imports(copy) == []
    _inject(copy, module, line)
    assert upward_imports(copy) != []


def test_an_injected_cycle_through_a_package_init_is_caught(tmp_path):
    copy = _copy(tmp_path)
    assert import_cycles(copy) == []
    # deepkb.llm (the package) imports llama_cpp, which would import the package back
    _inject(copy, "llm/llama_cpp.py", "from deepkb import llm")
    assert import_cycles(copy) != []


def test_a_new_module_outside_every_group_is_caught(tmp_path):
    copy = _copy(tmp_path)
    (copy / "helpers.py").write_text("")
    assert any("belongs to no layer group" in line for line in upward_imports(copy))


def test_the_checker_reads_relative_and_importlib_imports(tmp_path):
    fake = tmp_path / "deepkb"
    (fake / "pkg").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "a.py").write_text("")
    (fake / "pkg" / "__init__.py").write_text("from . import b\nfrom ..a import x\n")
    (fake / "pkg" / "b.py").write_text("import importlib\nimportlib.import_module('deepkb.a')\nfrom .. import a\n")
    graph = _graph(fake, with_typing=True)
    assert graph["deepkb.pkg"] == {"deepkb.pkg.b", "deepkb.a"}
    assert graph["deepkb.pkg.b"] == {"deepkb.a"}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__]))
