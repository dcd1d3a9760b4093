"""Dependencies point inward: the portal and the RADIUS server call controller services and
never touch SQL, netlink or the firewall themselves."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

ADAPTERS = ("captive", "radius")
FORBIDDEN = (
    "sqlalchemy",
    "pyroute2",
    "nftables",
    "controller.gateway.firewall",
    "controller.store.models",
    "controller.store.db",
    "controller.gateway.conntrack",
    "controller.gateway.shaping",
)


def imports_of(path: Path, package: str | None = None) -> set[str]:
    """Every module ``path`` imports, anywhere in it; relative imports made absolute (from
    ``package``, by default the one ``path`` is in)."""
    names = set()
    if package is None:
        package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            module = node.module or ""
            if node.level:
                module = f"{base}.{module}" if module else base
            if module:
                names.add(module)
                names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def test_adapters_never_import_storage_or_enforcement():
    offenders = []
    for package in ADAPTERS:
        for path in sorted((ROOT / package).rglob("*.py")):
            for name in imports_of(path):
                if any(name == f or name.startswith(f + ".") for f in FORBIDDEN):
                    offenders.append(f"{path.relative_to(ROOT)}: {name}")
    assert offenders == []


def test_the_checker_sees_a_forbidden_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from controller.gateway.firewall.memory import MemoryFirewall\nimport sqlalchemy.orm\n"
                   "from ...cli.fmt import emit_json\nfrom . import memory\n")  # fmt: skip
    names = imports_of(bad, package="controller.gateway.firewall")
    assert {"controller.gateway.firewall.memory", "sqlalchemy.orm", "controller.cli.fmt"} <= names


def test_only_one_module_reads_yaml():
    readers = [
        str(p.relative_to(ROOT))
        for p in sorted((ROOT / "controller").rglob("*.py"))
        if "yaml" in imports_of(p)
    ]
    assert readers == ["controller/config/source.py"]


def offenders(paths, forbidden) -> list[str]:
    return [
        f"{path.relative_to(ROOT)}: {name}"
        for path in paths
        for name in sorted(imports_of(path))
        if any(name == f or name.startswith(f + ".") for f in forbidden)
    ]


def test_the_portal_imports_neither_radius_nor_the_cli():
    paths = sorted((ROOT / "captive").rglob("*.py"))
    assert offenders(paths, ("radius", "click", "controller.cli", "controller.demo",
                             "controller.bootstrap")) == []  # fmt: skip


def test_the_core_imports_no_adapter_and_no_framework():
    """The controller's rules and daemon know routers only by the Disconnect port
    (controller.services.routers); the composition root, the CLI and the demos, which put
    the pieces together, may."""
    outside = ("controller/cli/", "controller/demo/", "controller/bootstrap.py")
    paths = [p for p in sorted((ROOT / "controller").rglob("*.py"))
             if not str(p.relative_to(ROOT)).startswith(outside)]  # fmt: skip
    roots = ("controller.cli", "controller.demo", "controller.bootstrap")
    assert offenders(paths, ("captive", "radius", "click", "flask", *roots)) == []


def test_the_checker_sees_each_forbidden_import_of_the_core(tmp_path):
    """Each rule above finds what it forbids (so a rule cannot pass by finding nothing)."""
    bad = tmp_path / "bad.py"
    bad.write_text("import flask\nfrom radius.coa import RouterDisconnect\nfrom captive import parts\n"
                   "from controller import bootstrap\nfrom ..cli.app import App\n")  # fmt: skip
    names = imports_of(bad, package="controller.services")
    found = [n for n in sorted(names) if any(n == f or n.startswith(f + ".") for f in
             ("captive", "radius", "flask", "controller.cli", "controller.bootstrap"))]  # fmt: skip
    assert {"flask", "radius.coa", "captive", "controller.bootstrap", "controller.cli.app"} <= set(
        found
    )
