"""The package's layering, read from its source: no import cycles, no private cross-module imports.

Every ``import`` counts, also those inside functions (a lazy import still ties two modules
together). A command module is found by the CLI by name (``cli.COMMAND_MODULES``), which is not
an import: the commands import the CLI, never the other way round.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "lightning_ser"


def module_files(root: Path = PACKAGE) -> dict[str, Path]:
    """``{dotted module name: file}`` for every ``.py`` file of the package."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = package[: len(package) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def imports(modules: dict[str, Path]) -> tuple[dict[str, set[str]], list[str]]:
    """The import graph between package modules, and every use of another module's private name
    (``from m import _x``, or ``m._x`` on an imported package module) as ``"module:line: what"``."""
    graph: dict[str, set[str]] = {m: set() for m in modules}
    private: list[str] = []
    for module, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        aliases: dict[str, str] = {}  # local name → package module it is bound to
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name in modules:
                        graph[module].add(a.name)
                        if a.asname:
                            aliases[a.asname] = a.name
            elif isinstance(node, ast.ImportFrom):
                source = _resolve(module, path, node)
                for a in node.names:
                    sub = f"{source}.{a.name}"
                    target = sub if sub in modules else source
                    if target in modules:
                        graph[module].add(target)
                    if sub in modules:
                        aliases[a.asname or a.name] = sub
                    elif (source in modules and source != module and a.name.startswith("_")
                          and not a.name.startswith("__")):
                        private.append(f"{module}:{node.lineno}: from {source} import {a.name}")
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in aliases and aliases[node.value.id] != module
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                private.append(f"{module}:{node.lineno}: {aliases[node.value.id]}.{node.attr}")
    for targets in graph.values():
        targets.discard("")
    return graph, private


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph.get(v, ()):
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_package_has_no_import_cycles():
    graph, _ = imports(module_files())
    assert len(graph) > 50 and graph["lightning_ser.augment.pipeline"]  # the graph was read
    assert cycles(graph) == [], "import cycles (a lazy import counts too)"


def test_no_module_imports_another_modules_private_names():
    _, private = imports(module_files())
    assert private == [], "private names used across modules: make them public or move them"


def test_the_checks_catch_a_cycle_and_a_private_import(tmp_path):
    """The two checks above can fail: a planted cycle and private import are found."""
    pkg = tmp_path / "lightning_ser"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from lightning_ser.sub import b\n\ndef f():\n    return b._hidden\n")
    (pkg / "sub" / "b.py").write_text("def g():\n    from ..a import f\n    from .c import _x\n")
    (pkg / "sub" / "c.py").write_text("_x = 1\n")
    modules = module_files(pkg)
    graph, private = imports(modules)
    assert cycles(graph) == [["lightning_ser.a", "lightning_ser.sub.b"]]
    assert [p.split(": ", 1)[1] for p in private] == ["lightning_ser.sub.b._hidden",
                                                       "from lightning_ser.sub.c import _x"]


MAX_LINES = 300


def test_long_modules_say_why_at_their_top():
    """A module over 300 lines states at the top of its docstring why it is one file."""
    unexplained = []
    for module, path in module_files().items():
        text = path.read_text()
        name = str(path.relative_to(PACKAGE.parent))
        if len(text.splitlines()) > MAX_LINES:
            doc = ast.get_docstring(ast.parse(text)) or ""
            if f"{MAX_LINES} lines" not in doc:
                unexplained.append(f"{name}: {len(text.splitlines())} lines")
    assert unexplained == [], "split these modules or say in their docstring why they are longer"
