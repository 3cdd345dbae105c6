"""The import rule of the package layout (README, "How the code is organised"):

    cli → app → {build, training, store, keras_io, config, data, sweeps}
        → components → engine → errors

read from the source with ``ast``: top-level imports and the imports inside functions
alike (a lazy import is still a dependency). Nothing imports a layer above its own,
and the packages of one layer import each other without a cycle.

Where the modules the diagram does not name sit (decided here, checked here):
- ``errors``, ``console`` (where human output goes), ``events`` (the JSONL sink),
  ``fileio`` (atomic writes) and ``memory`` (this machine's memory, sizes for people)
  are the floor: anything may use them, they use nothing but each other.
- ``config.registry`` (the Registry, the argument types of the schema) and
  ``config.families`` (one registry per family) are how components register
  themselves by name: they sit beneath the components and the engine, importing
  only the floor. ``config/__init__.py`` is empty so that importing them loads
  nothing else of config.
- ``datasets`` (the built-in data sets) and ``data.preprocessing`` (the preprocessing
  steps) are registered families: components.
- ``runfiles`` (the names a run folder reserves, what a run wrote there) is floor:
  callbacks check their file names against it, the store writes by it.
- ``fetch`` (downloads into Keras's cache, with hashes, resume and mirror) is floor:
  Keras's datasets (components) and the application families fetch through it.
- ``applications`` (the pretrained Keras families, written as configs the builder
  takes) is a service: it expands a model config before the build.
- ``distributed`` (the MPI communicator, the rows of a batch this rank holds, the
  start-up agreement checks) is floor: layers (BatchNormalization's statistics, noise
  masks), the engine (the activity penalty's batch size), the model and the loop ask it.
- ``strict_json`` (JSON that strict parsers read: NaN/Inf as null) is floor: events and
  the CLI print through it.
- ``config.usercode`` (importing ``module:Name`` from the config's folder) and
  ``config.usercomponents`` (the user's losses, metrics, initializers, ... by name) sit
  with the registries: components look user code up through them.
- ``onnx_io`` is a format library beside ``keras_io``; ``testing`` (the public
  gradient check for user losses) uses components, as a service does.
- the engine finds an ``activity_regularizer`` through the regularizer registry, not
  by importing the regularizers.
"""

import ast
from pathlib import Path

import trainer

ROOT = Path(trainer.__file__).parent

#: lowest first; a module's layer is that of the longest prefix listed
LAYERS = [
    ("floor", ["trainer", "trainer.errors", "trainer.console", "trainer.events",
               "trainer.fileio", "trainer.memory", "trainer.strict_json",
               "trainer.runfiles", "trainer.fetch", "trainer.distributed"]),
    ("registry", ["trainer.config.registry", "trainer.config.families",
                  "trainer.config.usercode", "trainer.config.usercomponents"]),
    ("engine", ["trainer.engine"]),
    ("components", ["trainer.layers", "trainer.activations", "trainer.initializers",
                    "trainer.regularizers", "trainer.losses", "trainer.metrics",
                    "trainer.optimizers", "trainer.schedules", "trainer.callbacks",
                    "trainer.datasets", "trainer.data.preprocessing"]),
    ("services", ["trainer.build", "trainer.training", "trainer.store", "trainer.keras_io",
                  "trainer.onnx_io", "trainer.config", "trainer.data", "trainer.sweeps",
                  "trainer.applications",
                  "trainer.testing"]),
    ("app", ["trainer.app"]),
    ("cli", ["trainer.cli", "trainer.__main__"]),
]
RANK = {prefix: i for i, (_, prefixes) in enumerate(LAYERS) for prefix in prefixes}
NAME = {i: name for i, (name, _) in enumerate(LAYERS)}


def modules():
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = modules()


def unit(module):
    """The listed prefix a module belongs to (its package in the table)."""
    best = max((p for p in RANK if module == p or module.startswith(p + ".")), key=len)
    return best


def _resolve(name):
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def imports(module, path):
    """(imported module, line, inside a function) for each trainer import."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    lazy = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef,
                                                            ast.AsyncFunctionDef))
            for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))}
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] == "trainer":
                target = _resolve(name)
                if target and target != module:
                    yield target, node.lineno, id(node) in lazy


def edges():
    out = []
    for module, path in sorted(MODULES.items()):
        for target, line, lazy in imports(module, path):
            out.append((module, target, f"{path.relative_to(ROOT.parent)}:{line}"
                        + (" (inside a function)" if lazy else "")))
    return out


EDGES = edges()


def test_every_module_has_a_layer():
    assert all(unit(m) for m in MODULES)


def test_nothing_imports_upward():
    bad = [f"{where}: {a} ({NAME[RANK[unit(a)]]}) imports {b} ({NAME[RANK[unit(b)]]})"
           for a, b, where in EDGES if RANK[unit(b)] > RANK[unit(a)]]
    assert not bad, "imports against the layer rule:\n" + "\n".join(bad)


def test_keras_io_is_a_format_library():
    """keras_io reads and writes Keras files: it imports nothing of its own layer's
    neighbours (config loader, builders, store, data) nor above."""
    services = RANK["trainer.keras_io"]
    bad = [f"{where}: {a} imports {b}" for a, b, where in EDGES
           if unit(a) == "trainer.keras_io" and unit(b) != "trainer.keras_io"
           and RANK[unit(b)] >= services]
    assert not bad, "keras_io reaches outside the format library:\n" + "\n".join(bad)


def _cycle(graph):
    """One cycle of ``graph`` (node -> {node: where}) as [(a, b, where)], or None."""
    state = {}

    def visit(node, stack):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                ring = stack[stack.index(nxt):] + [nxt]
                return [(a, b, graph[a][b]) for a, b in zip(ring, ring[1:])]
            if nxt not in state:
                found = visit(nxt, stack)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node, [])
            if found:
                return found
    return None


def test_no_cycle_between_packages():
    graph = {}
    for a, b, where in EDGES:
        ua, ub = unit(a), unit(b)
        if ua != ub and not ub.startswith(ua + "."):  # data -> data.preprocessing is down
            graph.setdefault(ua, {}).setdefault(ub, where)
    ring = _cycle(graph)
    assert ring is None, "a cycle between packages:\n" + "\n".join(
        f"{where}: {a} imports {b}" for a, b, where in ring)


def test_no_cycle_between_modules():
    graph = {}
    for a, b, where in EDGES:
        if b != "trainer":  # the root package holds only __version__
            graph.setdefault(a, {}).setdefault(b, where)
    ring = _cycle(graph)
    assert ring is None, "a cycle between modules:\n" + "\n".join(
        f"{where}: {a} imports {b}" for a, b, where in ring)


def test_the_checker_sees_lazy_imports_and_names_the_edge(tmp_path):
    src = tmp_path / "mod.py"
    src.write_text("def f():\n    from trainer.app import fit\n")
    found = list(imports("trainer.engine.mod", src))
    assert found == [("trainer.app.fit", 2, True)]
    assert RANK[unit("trainer.app.fit")] > RANK[unit("trainer.engine.graph")]
