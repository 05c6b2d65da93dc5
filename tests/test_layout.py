"""The code's shape, as issue 25 set it: no import cycle between modules, no module-global state, a run that
reads as short phases. Read from the source with `ast` (the last test imports every module)."""
import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "imagefit"


def modules() -> dict[str, tuple[Path, bool]]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the imagefit modules it imports, anywhere in it (inside functions too), and the packages whose
    __init__ such an import runs."""
    mods = modules()

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph = {m: set() for m in mods}
    for name, (path, is_package) in mods.items():
        base = name.split(".") if is_package else name.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                prefix = base[:len(base) - node.level + 1] if node.level else []
                module = ".".join(prefix + ([node.module] if node.module else []))
                targets = [t for t in (f"{module}.{a.name}" for a in node.names) if t in mods] or [module]
            else:
                continue
            for target in targets:
                found = resolve(target)
                if not found or not found.startswith("imagefit"):
                    continue
                parts = found.split(".")
                packages = [".".join(parts[:k]) for k in range(2, len(parts))]
                graph[name].update(t for t in [found, *packages] if t != name and not name.startswith(t + "."))
    return graph


def cycle_in(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a path of modules, or None."""
    state, path = {}, []

    def visit(v):
        state[v] = "open"
        path.append(v)
        for w in sorted(graph[v]):
            if state.get(w) == "open":
                return path[path.index(w):] + [w]
            if w not in state and (found := visit(w)):
                return found
        state[v] = "done"
        path.pop()
        return None

    for v in sorted(graph):
        if v not in state and (found := visit(v)):
            return found
    return None


def test_no_import_cycle_between_modules():
    graph = import_graph()
    assert len(graph) > 50 and graph["imagefit.train.run"] >= {"imagefit.plan", "imagefit.train.fit"}
    assert cycle_in(graph) is None, " -> ".join(cycle_in(graph))


def test_the_cycle_check_finds_a_cycle():
    assert cycle_in({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert cycle_in({"a": {"b"}, "b": set()}) is None


def test_no_global_statement_in_the_package():
    found = [f"{path.relative_to(SRC)}:{node.lineno}" for path, _ in modules().values()
             for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Global)]
    assert not found, found


def test_a_run_reads_as_short_phases():
    tree = ast.parse((PACKAGE / "train" / "run.py").read_text())
    lengths = {n.name: n.end_lineno - n.lineno + 1 for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    assert {"prepare", "decide_network", "build_model", "decide_transfer", "build_trainable", "decide_steps"} <= set(lengths)
    assert max(lengths.values()) <= 80, {k: v for k, v in lengths.items() if v > 80}


def test_no_package_exports_a_name_that_is_also_its_submodule():
    """A package whose __all__ names one of its own submodules hands out the function until that submodule is
    imported, and the module after (`from imagefit.train import lr_find` once gave the module, and
    `imagefit lr-find` failed with "'module' object is not callable"). Imports every module, then asks."""
    import importlib
    import types

    names = sorted(modules())
    for name in names:
        importlib.import_module(name)
    clashes = [f"{name}.{export}" for name, (_, is_package) in modules().items() if is_package
               for export in getattr(importlib.import_module(name), "__all__", [])
               if isinstance(getattr(importlib.import_module(name), export), types.ModuleType)]
    assert not clashes, clashes
