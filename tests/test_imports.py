"""The package's structure: no import cycle between its modules, and methods that never reach for the trainer."""

import ast
from pathlib import Path

import hf_lnl

PACKAGE = Path(hf_lnl.__file__).parent


def _module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, module_level_only: bool, package_dir: Path = PACKAGE) -> set[str]:
    """The package modules `path` imports (relative imports resolved); `from .pkg import name` counts `pkg.name`
    when that is a module of its own, else `pkg`."""
    root = package_dir.name
    tree = ast.parse(path.read_text())
    name = _module_name(path, package_dir)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    known = {_module_name(p, package_dir) for p in package_dir.rglob("*.py")}
    nodes = _module_level(tree.body) if module_level_only else ast.walk(tree)
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == root)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            if source.split(".")[0] != root:
                continue
            for alias in node.names:
                found.add(f"{source}.{alias.name}" if f"{source}.{alias.name}" in known else source)
    return found


def _module_level(body: list[ast.stmt]):
    """Statements that run on import: the top level and `if` / `try` blocks (TYPE_CHECKING included), not bodies of
    functions or classes."""
    for node in body:
        yield node
        if isinstance(node, ast.If):
            yield from _module_level(node.body + node.orelse)
        elif isinstance(node, ast.Try):
            yield from _module_level(node.body + node.orelse + node.finalbody)


def find_import_cycle(package_dir: Path) -> list[str] | None:
    """The first cycle of module-level imports between the package's modules, or None."""
    graph = {_module_name(p, package_dir): _imports(p, True, package_dir) for p in package_dir.rglob("*.py")}
    visiting, done = [], set()

    def visit(module: str) -> list[str] | None:
        if module in visiting:
            return visiting[visiting.index(module) :] + [module]
        if module in done or module not in graph:
            return None
        visiting.append(module)
        for imported in sorted(graph[module]):
            if cycle := visit(imported):
                return cycle
        visiting.pop()
        done.add(module)
        return None

    for module in sorted(graph):
        if cycle := visit(module):
            return cycle
    return None


def test_no_module_level_import_cycle():
    assert "hf_lnl.methods.registry" in _imports(PACKAGE / "methods" / "__init__.py", module_level_only=True)
    assert find_import_cycle(PACKAGE) is None


def test_methods_never_import_the_trainer():
    for path in (PACKAGE / "methods").glob("*.py"):
        imported = _imports(path, module_level_only=False)
        assert not {"hf_lnl.trainer", "hf_lnl.context"} & imported, f"{path.name} imports {imported}"
        assert "trainer import" not in path.read_text() and "hf_lnl.trainer" not in path.read_text(), path.name


def test_the_cycle_finder_sees_a_cycle_through_a_type_checking_block(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from .b import x\n")
    (package / "b.py").write_text("if TYPE_CHECKING:\n    from . import a\n")
    assert find_import_cycle(package) == ["pkg.a", "pkg.b", "pkg.a"]


def test_the_trainer_stays_thin():
    """trainer.py is wiring: at most 400 lines, no comparison with a method's name, no import of a method's module."""
    from hf_lnl.methods import METHOD_NAMES

    path = PACKAGE / "trainer.py"
    assert len(path.read_text().splitlines()) <= 400
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Compare):
            constants = {n.value for n in ast.walk(node) if isinstance(n, ast.Constant)}
            assert not constants & set(METHOD_NAMES), ast.unparse(node)
    method_modules = {_module_name(p) for p in (PACKAGE / "methods").glob("*.py")} - {
        "hf_lnl.methods", "hf_lnl.methods.base", "hf_lnl.methods.registry"
    }
    assert not method_modules & _imports(path, module_level_only=False)
