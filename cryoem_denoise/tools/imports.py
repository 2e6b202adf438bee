"""Check the package's imports: no cycles, and no package module imported inside a function.

Run ``python -m cryoem_denoise.tools.imports``: it prints the import graph's cycles and the
function-level imports of the package's own modules, and exits with status 1 if there are
any. Lazy imports of third-party modules (TensorFlow, JAX, Keras) are allowed anywhere. The
graph is read from the source with :mod:`ast`, so nothing is imported to check it.
"""

import ast
import sys
from pathlib import Path

__all__ = ["module_imports", "import_cycles", "function_level_imports", "layer_violations",
           "main"]

PACKAGE = "cryoem_denoise"
#: Modules that import one backend (TensorFlow or JAX) at their top: importing them inside a
#: function is a lazy import of that backend, which is allowed.
BACKEND_MODULES = ("cryoem_denoise.training.tf_step", "cryoem_denoise.training.jax_step")
#: Each subpackage's layer (docs/architecture.md): a module imports from its own
#: subpackage, or from a lower layer; ``training`` and ``inference`` share a layer and do not
#: import each other.
LAYERS = {"errors": 0, "config": 0, "io": 1, "runtime": 1, "data": 1, "model": 2,
          "training": 3, "inference": 3, "evaluation": 4, "cli": 5, "tools": 5}
#: The documented exceptions: ``config`` validates with four leaves of ``data`` that import
#: only ``errors`` and each other (``intensity``, ``noise``, ``detector``, ``training_noise``:
#: the names of the noise family and the contrast range); ``metrics`` and ``figures`` (leaves importing only ``errors`` and
#: ``io.atomic``) serve validation scores, ``apply --sigma`` metrics, previews and FRC.
ALLOWED_UPWARD = {
    ("cryoem_denoise.config", "cryoem_denoise.data.intensity"),
    ("cryoem_denoise.config", "cryoem_denoise.data.noise"),
    ("cryoem_denoise.config", "cryoem_denoise.data.detector"),
    ("cryoem_denoise.config", "cryoem_denoise.data.training_noise"),
    ("cryoem_denoise.inference.apply_files", "cryoem_denoise.evaluation.metrics"),
    ("cryoem_denoise.inference.apply_files", "cryoem_denoise.evaluation.figures"),
    ("cryoem_denoise.inference.halves", "cryoem_denoise.evaluation.metrics"),
    ("cryoem_denoise.inference.halves", "cryoem_denoise.evaluation.figures"),
    ("cryoem_denoise.training.loop", "cryoem_denoise.evaluation.metrics"),
}
ROOT = Path(__file__).resolve().parents[1]


def _module_name(path):
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules():
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _targets(node, module, modules):
    """Package modules an import node names (``from pkg import mod`` names ``pkg.mod``)."""
    names = []
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            package = module.split(".")
            if not modules[module].name == "__init__.py":
                package = package[:-1]
            package = package[:len(package) - node.level + 1]
            base = ".".join(package + ([base] if base else []))
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
    found = set()
    for name in names:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        if name.startswith(PACKAGE) and name != PACKAGE:
            found.add(name)
    return found


def _walk(tree):
    """``(node, inside_function)`` for every import node."""
    stack = [(tree, False)]
    while stack:
        node, inside = stack.pop()
        for child in ast.iter_child_nodes(node):
            nested = inside or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, inside
            stack.append((child, nested))


def module_imports():
    """``{module: {imported package module: inside_function}}`` for every package module
    (a module a parent package's ``__init__`` runs counts as imported by it)."""
    modules = _modules()
    graph = {}
    for module, path in modules.items():
        edges = {}
        for node, inside in _walk(ast.parse(path.read_text(), str(path))):
            for target in _targets(node, module, modules):
                if target != module:
                    edges[target] = edges.get(target, True) and inside
        graph[module] = edges
    return graph


def import_cycles(graph=None):
    """Cycles of the import graph (function-level imports included), each as a list of
    modules, found by Tarjan's strongly connected components."""
    graph = module_imports() if graph is None else graph
    index, low, on_stack, stack, cycles = {}, {}, set(), [], []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
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
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(max(10000, sys.getrecursionlimit()))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def _is_package_of(parent, child):
    return child.startswith(parent + ".")


def function_level_imports(graph=None):
    """``(module, imported)`` pairs where a package module is imported only inside a
    function (``cryoem_denoise.cli`` may import the library lazily: start-up time)."""
    graph = module_imports() if graph is None else graph
    return sorted((m, t) for m, edges in graph.items() for t, inside in edges.items()
                  if inside and not m.startswith(f"{PACKAGE}.cli") and not _is_package_of(m, t)
                  and t not in BACKEND_MODULES)


def _layer(module):
    parts = module.split(".")
    sub = parts[1] if len(parts) > 1 else ""
    return LAYERS.get(sub, max(LAYERS.values()) + 1), sub


def layer_violations(graph=None):
    """``(module, imported)`` pairs that import upwards (or across ``training`` and
    ``inference``), less :data:`ALLOWED_UPWARD`."""
    graph = module_imports() if graph is None else graph
    found = []
    for module, edges in sorted(graph.items()):
        level, sub = _layer(module)
        for target in sorted(edges):
            t_level, t_sub = _layer(target)
            if (t_level > level or (t_level == level and t_sub != sub and level == LAYERS["training"])) \
                    and (module, target) not in ALLOWED_UPWARD:
                found.append((module, target))
    return found


def main(argv=None):
    graph = module_imports()
    cycles = import_cycles(graph)
    lazy = function_level_imports(graph)
    upward = layer_violations(graph)
    for cycle in cycles:
        print("cycle: " + " <-> ".join(cycle))
    for module, target in lazy:
        print(f"function-level import: {module} imports {target}")
    for module, target in upward:
        print(f"upward import: {module} imports {target} (see LAYERS)")
    print(f"{len(graph)} modules, {sum(map(len, graph.values()))} imports between them, "
          f"{len(cycles)} cycle(s), {len(lazy)} function-level import(s) of package modules, "
          f"{len(upward)} upward import(s)")
    return 1 if cycles or lazy or upward else 0


if __name__ == "__main__":
    sys.exit(main())
