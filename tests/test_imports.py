"""Imports go one way: models never import the data package (aste), and no module imports itself
back through others."""
import ast
import os
import subprocess
import sys

from conftest import ROOT


def module_graph() -> dict[str, set[str]]:
    files = {"train": "train.py", "predict": "predict.py", "Parameter": "Parameter.py"}
    for folder in ("aste", "models", "models/fusion"):
        for f in os.listdir(os.path.join(ROOT, folder)):
            if f.endswith(".py"):
                files[(folder.replace("/", ".") + "." + f[:-3]).removesuffix(".__init__")] = os.path.join(folder, f)
    graph = {}
    for name, path in files.items():
        package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
        deps = set()
        for node in ast.walk(ast.parse(open(os.path.join(ROOT, path), encoding="utf-8").read())):
            if isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                deps |= {f"{target}.{a.name}" if f"{target}.{a.name}" in files else target for a in node.names}
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
        graph[name] = {d for d in deps if d in files and d != name}
    return graph


def test_no_import_cycle_and_models_never_import_aste():
    graph = module_graph()
    assert not [(a, b) for a in graph for b in graph[a] if a.startswith("models") and not b.startswith("models")]
    done, active = set(), []

    def visit(m):
        assert m not in active, "import cycle: " + " -> ".join(active[active.index(m):] + [m])
        if m in done:
            return
        active.append(m)
        for dep in graph[m]:
            visit(dep)
        active.pop()
        done.add(m)
    for m in graph:
        visit(m)


def test_importing_models_loads_no_data_package():
    code = "import models, sys; print(sorted(m for m in sys.modules if m.split('.')[0] in ('aste', 'train', 'predict')))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
