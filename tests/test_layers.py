"""The package's layers, as docs/architecture.md draws them, kept by reading its imports.

Every import counts, function-level ones too: a cycle hidden inside a function
is still a cycle. Imports go down the list of layers (or sideways within one,
without a cycle); nothing imports cli.py.
"""
from __future__ import annotations

import ast
import functools
import pathlib
import subprocess
import sys

import pytest

PKG = pathlib.Path(__file__).resolve().parents[1] / "exporter" / "runwatch"

# Bottom first. A module belongs to the layer that names it, or names the subpackage it is in
# ("runwatch.parse" takes runwatch.parse.packs); a module no layer names fails the test.
LAYERS = [
    ("bottom", ["runwatch", "runwatch.settings", "runwatch.events", "runwatch.yamlfile", "runwatch.client",
                "runwatch.retry"]),
    ("parse", ["runwatch.parse"]),
    ("model", ["runwatch.model"]),
    ("sources", ["runwatch.sources"]),
    ("export", ["runwatch.export", "runwatch.config"]),
    ("web", ["runwatch.web"]),
    ("commands", ["runwatch.commands"]),
    ("cli", ["runwatch.cli", "runwatch.__main__"]),
]
SUBPACKAGES = {"runwatch.parse", "runwatch.model", "runwatch.sources", "runwatch.export", "runwatch.web",
               "runwatch.commands"}


def module_name(path: pathlib.Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, pathlib.Path]:
    return {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def layer_of(mod: str) -> int:
    for i, (_, names) in enumerate(LAYERS):
        for name in names:
            if mod == name or (name in SUBPACKAGES and mod.startswith(name + ".")):
                return i
    raise AssertionError(f"{mod} is in no layer: add it to LAYERS and docs/architecture.md")


def imports_of(mod: str, path: pathlib.Path, modules: set[str]) -> set[str]:
    """runwatch modules that `mod` imports anywhere in its file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_pkg = path.name == "__init__.py"
    here = mod.split(".") if is_pkg else mod.split(".")[:-1]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [target] + [f"{target}.{a.name}" for a in node.names]
        else:
            continue
        for n in names:
            while n and n not in modules:         # `from x import name`: the module is x
                n = n.rpartition(".")[0]
            if n and n != mod and n.startswith("runwatch"):
                out.add(n)
    out.discard("runwatch") if mod != "runwatch" else None
    return out


@functools.cache                          # read once for the tests below (parsing every module costs ~0.5 s)
def graph() -> dict[str, set[str]]:
    mods = all_modules()
    names = set(mods)
    return {m: imports_of(m, p, names) for m, p in mods.items()}


def test_every_module_is_in_a_layer():
    for m in all_modules():
        layer_of(m)
    with pytest.raises(AssertionError, match="in no layer"):
        layer_of("runwatch.newthing")          # a new top-level module must be placed on purpose


def test_imports_only_go_down():
    bad = []
    for mod, deps in graph().items():
        for d in deps:
            if layer_of(d) > layer_of(mod):
                bad.append(f"{mod} ({LAYERS[layer_of(mod)][0]}) imports {d} ({LAYERS[layer_of(d)][0]})")
    assert not bad, "upward imports:\n" + "\n".join(sorted(bad))


def test_nothing_imports_cli():
    users = [m for m, deps in graph().items() if "runwatch.cli" in deps and m != "runwatch.__main__"]
    assert not users, f"cli.py is the top: {users} import it"


def test_no_import_cycle():
    g = graph()
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for d in sorted(g[m]):
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_checker_sees_function_level_imports(tmp_path):
    """The reader must count an import hidden in a function, or the layer tests prove nothing."""
    mods = {"runwatch.parse.packs", "runwatch.commands.backfill", "runwatch.parse"}
    f = tmp_path / "packs.py"
    f.write_text("def f():\n    from ..commands.backfill import x\n")
    # pretend the file sits at runwatch/parse/packs.py
    assert imports_of("runwatch.parse.packs", f, mods) == {"runwatch.commands.backfill"}


def test_help_imports_only_the_command_line():
    """`runwatch --help` stays instant: no prometheus_client, no YAML, no stage modules."""
    code = ("import sys, runwatch.cli as c\n"
            "try:\n    c.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.startswith('runwatch') or m in "
            "('prometheus_client', 'yaml', 'sqlite3', 'http.server')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = eval(out.strip().splitlines()[-1])
    assert loaded == ["runwatch", "runwatch.cli", "runwatch.settings"], loaded


@pytest.mark.stack
@pytest.mark.parametrize("mod", sorted(all_modules()))
def test_module_imports_cleanly_on_its_own(mod):
    if mod == "runwatch.__main__":
        pytest.skip("runs the CLI when imported")
    subprocess.run([sys.executable, "-c", f"import {mod}"], check=True)
