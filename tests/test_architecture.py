"""The package's structure: no import cycles, and no import that points up the layers."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "pcal_cli"
#: Packages that sit below the round engine (steps/) and the command line (cli/).
LOWER = ("training", "evaluation", "acquisition", "selection", "models", "sparse", "geometry", "data", "jopro",
         "weak", "seedal", "annotation")


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _graph() -> dict[str, set[str]]:
    """Module -> the pcal_cli modules it imports, at any depth of the file (lazy imports too)."""
    modules = _modules()
    graph = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("pcal_cli"):
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    graph[name].add(sub if sub in modules else node.module)
            elif isinstance(node, ast.Import):
                graph[name].update(a.name for a in node.names if a.name in modules)
    return graph


def test_no_import_cycle():
    graph = _graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph[node]):
            if target not in graph:
                continue
            if state.get(target) == 1:
                cycles.append(path[path.index(target):] + [target] if target in path else [node, target])
            elif target not in state:
                visit(target, path + [target])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == [], cycles


def test_lower_layers_import_nothing_from_the_engine_or_the_command_line():
    up = []
    for name, targets in _graph().items():
        parts = name.split(".")
        if len(parts) > 1 and parts[1] in LOWER:
            up += [(name, t) for t in targets if t.split(".")[1:2] in (["steps"], ["cli"])]
    assert up == [], up


def test_project_file_names_are_defined_in_layout_only():
    """Every ``*_FILE``/``*_DIR``/``*_NAME`` string constant naming a project path lives in
    pcal_cli/layout.py; other modules import it (so a rename happens in one place)."""
    from pcal_cli import layout

    names = {n for n in vars(layout) if n.isupper()}
    values = {getattr(layout, n) for n in names}
    elsewhere = []
    for name, path in _modules().items():
        if name == "pcal_cli.layout":
            continue
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and len(node.targets) == 1:
                target = node.targets[0]
                if isinstance(target, ast.Name) and (target.id in names or (
                        target.id.endswith(("_FILE", "_DIR")) and node.value.value in values)):
                    elsewhere.append(f"{name}.{target.id}")
    assert elsewhere == []
    assert len(values) == len(names)  # no two names for one path
