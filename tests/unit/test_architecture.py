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
    "controller.firewall",
    "controller.models",
    "controller.db",
    "controller.network",
    "controller.shaping",
)


def imports_of(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
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
    bad.write_text("from controller.firewall.memory import MemoryFirewall\nimport sqlalchemy.orm\n")
    assert {"controller.firewall.memory", "sqlalchemy.orm"} <= imports_of(bad)


def test_only_one_module_reads_yaml():
    readers = [
        str(p.relative_to(ROOT))
        for p in sorted((ROOT / "controller").rglob("*.py"))
        if "yaml" in imports_of(p)
    ]
    assert readers == ["controller/yamlsource.py"]


def offenders(paths, forbidden) -> list[str]:
    return [
        f"{path.relative_to(ROOT)}: {name}"
        for path in paths
        for name in sorted(imports_of(path))
        if any(name == f or name.startswith(f + ".") for f in forbidden)
    ]


def test_the_portal_imports_neither_radius_nor_the_cli():
    paths = sorted((ROOT / "captive").rglob("*.py"))
    assert offenders(paths, ("radius", "click", "controller.cli", "controller.cliapp",
                             "controller.cli_controller", "controller.cli_admin",
                             "controller.cli_radius", "controller.cli_stats")) == []  # fmt: skip


def test_the_core_imports_no_adapter_and_no_framework():
    """The controller's rules and daemon know routers only by the Disconnect port
    (controller.routers); the CLI and the demos, which put the pieces together, may."""
    outside = ("controller/cli", "controller/demo")
    paths = [p for p in sorted((ROOT / "controller").rglob("*.py"))
             if not str(p.relative_to(ROOT)).startswith(outside)]  # fmt: skip
    assert offenders(paths, ("captive", "radius", "click", "flask")) == []
