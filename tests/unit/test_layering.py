"""The runtime (``services/``, ``models/``: what the image ships) never imports the tools
(``tools/``, ``load_tests/``), which the image does not hold: an import of them would fail
there, and only there. One exception: ``fraud`` asks for the tools' subcommands behind an
``except ModuleNotFoundError`` (services/cli.py). Read from the source with ``ast``, so that an
import inside a function, which no import-time check sees, is found too."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from services.common.settings import PROJECT_ROOT

RUNTIME = ("services", "models")
TOOLS = {"tools", "load_tests"}
GUARDED = {("services/cli.py", "tools")}
"""(file, module) imports allowed inside a ``try`` that catches ModuleNotFoundError."""
MODULE_PATH = re.compile(r"^(tools|load_tests)(\.\w+)+$")
"""A string that names a tools module, as in ``python -m tools.bench.passthrough``."""


def _guarded(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.Try) and any(
            isinstance(h.type, ast.Name) and h.type.id in {"ModuleNotFoundError", "ImportError"}
            for h in node.handlers
        ):
            return True
    return False


def violations(path: Path, relative: str) -> list[str]:
    """``relative:line: what`` for each import of the tools in one runtime file."""
    tree = ast.parse(path.read_text(), filename=relative)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if MODULE_PATH.match(node.value):
                found.append(f"{relative}:{node.lineno}: names module {node.value!r}")
            continue
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top not in TOOLS:
                continue
            if (relative, name) in GUARDED and _guarded(node, parents):
                continue
            found.append(f"{relative}:{node.lineno}: imports {name}")
    return found


def test_the_runtime_imports_no_tool() -> None:
    files = sorted(p for package in RUNTIME for p in (PROJECT_ROOT / package).rglob("*.py"))
    assert len(files) > 50  # the walk found the runtime
    found = [v for p in files for v in violations(p, p.relative_to(PROJECT_ROOT).as_posix())]
    assert not found, "the runtime image has no tools/ or load_tests/:\n" + "\n".join(found)


def test_the_check_finds_each_kind_of_import(tmp_path: Path) -> None:
    """Hand-written cases: what must be found, and the one guarded import that must not."""
    source = tmp_path / "x.py"
    source.write_text(
        "import tools.bench\n"
        "from load_tests.kafka_load import arrivals\n"
        "def f():\n"
        "    from tools.demo import job\n"
        "    return ['python', '-m', 'tools.bench.passthrough']\n"
        "try:\n"
        "    import tools\n"
        "except ModuleNotFoundError:\n"
        "    pass\n"
        "import toolsmith, services.tools\n"
    )
    assert [v.split(": ", 1)[1] for v in violations(source, "services/cli.py")] == [
        "imports tools.bench",
        "imports load_tests.kafka_load",
        "imports tools.demo",
        "names module 'tools.bench.passthrough'",
    ]
    assert "x.py:7: imports tools" in violations(source, "x.py")  # unguarded elsewhere
