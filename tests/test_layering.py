"""Imports point down: no cycles inside ssr_jax (imports inside functions count), and the bottom layers — config
parsing and the data pipeline — reach neither the models nor the trainer nor inference.

The graph is read from the source with `ast`, so an import hidden in a function body is an edge like any other.
`from package import name` is an edge to the submodule `package.name` when there is one, else to the package; the
implicit import of a parent package's `__init__` is not counted (every submodule has it)."""
import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "ssr_jax"


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str) -> set[str]:
    """The project modules `name` imports anywhere in its source (module level, functions, methods)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                targets.add(submodule if submodule in MODULES else base)
    return {target for target in targets if target in MODULES and target != name}


GRAPH = {name: imports_of(name) for name in MODULES}


def reachable(start: str) -> set[str]:
    seen, stack = set(), [start]
    while stack:
        for target in GRAPH[stack.pop()]:
            if target not in seen:
                seen.add(target)
                stack.append(target)
    return seen


def find_cycle() -> list[str] | None:
    """One import cycle as [a, b, …, a], or None (depth-first search with a path stack)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> list[str] | None:
        state[name] = 1
        path.append(name)
        for target in sorted(GRAPH[name]):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state:
                cycle = visit(target, path)
                if cycle:
                    return cycle
        path.pop()
        state[name] = 2
        return None

    for name in sorted(MODULES):
        if name not in state:
            cycle = visit(name, [])
            if cycle:
                return cycle
    return None


def test_the_graph_sees_imports_inside_functions():
    # cli imports every command's module inside the command's function, so these edges exist only there.
    assert {"ssr_jax.train", "ssr_jax.sweep", "ssr_jax.launch", "ssr_jax.predict"} <= reachable("ssr_jax.cli")
    assert "ssr_jax.data.prepared" in GRAPH["ssr_jax.data"]  # `load_splits` imports it when a real dataset is asked


def test_no_import_cycles_in_ssr_jax():
    cycle = find_cycle()
    assert cycle is None, "import cycle: " + " → ".join(cycle)


def test_config_parsing_imports_nothing_of_the_project():
    assert GRAPH["ssr_jax.config_lib"] == set()


def test_data_and_config_layers_do_not_reach_models_trainer_or_inference():
    upper = {"ssr_jax.train", "ssr_jax.predict", "ssr_jax.saved_model"}
    bottom = ["ssr_jax.config_lib"] + [name for name in MODULES if name == "ssr_jax.data"
                                        or name.startswith("ssr_jax.data.")]
    assert len(bottom) > 10  # the builders are seen too
    for name in bottom:
        wrong = {target for target in reachable(name)
                 if target in upper or target == "ssr_jax.models" or target.startswith("ssr_jax.models.")}
        assert not wrong, f"{name} imports {sorted(wrong)}"
