"""The tree is the architecture: parts in layers, no import cycles, dev tools never served."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).parent.parent
PACKAGE = ROOT / "exporter"
MAX_LINES = 300

# Bottom to top: a part may import only the parts before it. `exporter` itself (the
# version) is below everything; `__main__` above everything. The command line is above the
# development tools because `bench` and `demo` are commands: it imports them when one of
# those runs, and test_serve_loads_no_development_tool keeps them out of `serve`.
LAYERS = ("exporter", "record", "config", "wire", "accounting", "telemetry", "store",
          "reports", "deployments", "reconcile", "api", "gateway", "app", "devtools", "cli",
          "__main__")
PARTS = {"config", "wire", "accounting", "telemetry", "store", "reports", "deployments",
         "reconcile", "api", "gateway", "cli", "devtools"}
TOP_LEVEL = {"__init__.py", "__main__.py", "app.py", "record.py"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every module of ours that `name` imports, anywhere in it (functions and
    TYPE_CHECKING blocks included: a cycle hidden there is still a cycle)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from . import x` imports the module x when there is one, else a name of base.
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                       for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]  # a name inside a module: the module
            if target and target != name:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports(name, path, set(mods)) for name, path in mods.items()}


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def test_every_module_lives_in_its_part():
    loose = {p.name for p in PACKAGE.glob("*.py")}
    assert loose == TOP_LEVEL
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders == PARTS
    for folder in folders:
        assert (PACKAGE / folder / "__init__.py").exists(), folder


def test_no_import_cycles():
    edges = graph()
    # Tarjan's strongly connected components: any component of two or more is a cycle.
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
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

    for v in sorted(edges):
        if v not in index:
            visit(v)
    assert cycles == []


def test_cycle_finder_finds_a_cycle(tmp_path):
    # The checker itself can fail: two modules importing each other are seen as such.
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import B\n")
    b.write_text("def f():\n    from . import a\n")
    known = {"pkg.a", "pkg.b"}
    assert imports("pkg.a", a, known) == {"pkg.b"}
    assert imports("pkg.b", b, known) == {"pkg.a"}


def test_parts_import_only_the_parts_below():
    rank = {name: i for i, name in enumerate(LAYERS)}
    upward = sorted(
        (source, target) for source, targets in graph().items() for target in targets
        if layer(target) != layer(source) and rank[layer(target)] > rank[layer(source)])
    assert upward == []


def test_modules_stay_small():
    long = {module: n for module, path in modules().items()
            if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}, f"split these along a seam a newcomer would recognise: {long}"


PROBE = """
import asyncio, json, os, signal, sys
import exporter.app as app
from exporter.cli.main import main

serve = app.serve

async def serve_once(config, *, ready=None, worker=False, load=None):
    # Started for real (both listeners, the history writer), then stopped as by SIGTERM.
    await serve(config, ready=lambda: os.kill(os.getpid(), signal.SIGTERM), worker=worker,
                load=load)

app.serve = serve_once
status = main(["serve", "--upstream", "http://127.0.0.1:9", "--listen", "127.0.0.1:0",
               "--admin-listen", "127.0.0.1:0"])
print(json.dumps({"status": status, "modules": sorted(sys.modules)}))
"""


def test_serve_loads_no_development_tool(tmp_path):
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout.splitlines()[-1])
    assert loaded["status"] == 0
    modules_ = loaded["modules"]
    assert "exporter.gateway.proxy" in modules_ and "exporter.store.writer" in modules_
    assert [m for m in modules_ if m.startswith("exporter.devtools")] == []
    # PostgreSQL's driver only for a history there: a SQLite gateway holds none of it.
    assert [m for m in modules_ if m.split(".")[0] in ("psycopg", "psycopg_pool")] == []
    # The gateway's HTTP is its own: aiohttp (demo, simulator, tests) is never loaded.
    assert [m for m in modules_ if m.split(".")[0] == "aiohttp"] == []


def test_wheel_from_a_clean_checkout_holds_every_part(tmp_path):
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                             check=True).stdout.decode().split("\0")
    checkout = tmp_path / "checkout"
    for name in filter(None, tracked):
        source = ROOT / name
        if source.is_file():
            (checkout / name).parent.mkdir(parents=True, exist_ok=True)
            (checkout / name).write_bytes(source.read_bytes())
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", "--disable-pip-version-check",
                    "-w", str(tmp_path / "dist"), str(checkout)],
                   check=True, capture_output=True, timeout=120)
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"exporter/{p.relative_to(PACKAGE).as_posix()}" for p in PACKAGE.rglob("*.py")}
    assert expected <= names, sorted(expected - names)
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "llm-usage-exporter = exporter.cli.main:main" in \
        zipfile.ZipFile(wheel).read(entry).decode()
