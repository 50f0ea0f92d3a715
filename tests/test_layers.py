"""The layer rules of ``sqsbus`` (docs/architecture.md), checked on the source's imports.

Every ``import`` and ``from ... import`` in ``sqsbus/`` is read with :mod:`ast` (type-only
imports included: a layer that needs another's types depends on it), and each rule below
names the modules it forbids to whom. A failure lists every offending import with its file
and line.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pytest

PACKAGE: Final = Path(__file__).resolve().parent.parent / "sqsbus"


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, e.g. sqsbus.engine.acker
    target: str  # what it imports, e.g. kombu.transport
    where: str  # file:line


@dataclass(frozen=True)
class Rule:
    """Modules under ``importer`` (a dotted prefix) must not import ``forbidden`` ones."""

    name: str
    importer: str
    forbidden: tuple[str, ...]
    #: Importers under ``importer`` the rule does not apply to.
    exempt: tuple[str, ...] = ()
    #: Imports allowed even though a ``forbidden`` prefix matches them.
    allowed: tuple[str, ...] = ()


#: Modules every layer may import, which import nothing of sqsbus themselves: the AWS limits,
#: the retry policies and the exception hierarchy.
LEAVES: Final = ("sqsbus.limits", "sqsbus.backoff", "sqsbus.errors")
#: Tools for tests, benchmarks and the demo that the runtime must never load.
TESTING_TOOLS: Final = ("sqsbus.testing",)
#: ``sqsbus demo``: tooling too; the command line loads it by name, only when it runs.
DEMO: Final = ("sqsbus.demo",)
#: The metrics: every layer records through it; it alone imports the optional OpenTelemetry
#: API (so that sqsbus runs without it), and nothing of sqsbus.
TELEMETRY: Final = "sqsbus.telemetry"

RULES: Final = [
    Rule(
        "the engine needs no adapter, router, operator tooling or expiry",
        "sqsbus.engine",
        (
            "kombu",
            "celery",
            "sqsbus.kombu",
            "sqsbus.admin",
            "sqsbus.cli",
            "sqsbus.routing",
            "sqsbus.expiry",
            "sqsbus.demo",
            "sqsbus.local",
            "sqsbus.testing",
        ),
    ),
    Rule(
        "the foundation (names, options, clients, codec, errors) imports nothing above it",
        "sqsbus.",
        (
            "kombu",
            "celery",
            "sqsbus.engine",
            "sqsbus.kombu",
            "sqsbus.routing",
            "sqsbus.admin",
            "sqsbus.expiry",
        ),
        exempt=(
            "sqsbus.engine",
            "sqsbus.kombu",
            "sqsbus.routing",
            "sqsbus.admin",
            "sqsbus.expiry",
            "sqsbus.cli",
            "sqsbus.demo",
            "sqsbus.__init__",
        ),
    ),
    Rule(
        "the operator tooling does not need the Kombu adapter",
        "sqsbus.admin",
        ("kombu", "celery", "sqsbus.kombu"),
    ),
    Rule(
        "the local endpoint stands alone",
        "sqsbus.local",
        ("sqsbus",),
        allowed=("sqsbus.local",),
    ),
    Rule(
        "runtime code never loads the testing tools (the demo is tooling)",
        "sqsbus",
        TESTING_TOOLS,
        exempt=(*TESTING_TOOLS, *DEMO),
    ),
    Rule(
        "the testing tools need only the local endpoint's helpers, no Kombu or Celery",
        "sqsbus.testing",
        ("sqsbus", "kombu", "celery"),
        allowed=(*TESTING_TOOLS, "sqsbus.local"),
    ),
    Rule("runtime code never imports the demo", "sqsbus", DEMO, exempt=DEMO),
    Rule("the package never imports tests or benchmarks", "sqsbus", ("tests", "bench")),
    *(
        Rule(f"{leaf} (one home of a rule) imports nothing else of sqsbus", leaf, ("sqsbus",))
        for leaf in LEAVES
    ),
    Rule(
        "only telemetry (metrics), tracing (context in headers) and the demo's Prometheus "
        "server import OpenTelemetry, an optional dependency",
        "sqsbus",
        ("opentelemetry",),
        exempt=(TELEMETRY, "sqsbus.tracing", "sqsbus.demo.metrics"),
    ),
    Rule("the telemetry module imports nothing else of sqsbus", TELEMETRY, ("sqsbus",)),
]


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts)


def imports_of(path: Path, root: Path) -> Iterator[Import]:
    """Every module ``path`` imports, relative imports resolved."""
    module = module_name(path, root)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        where = f"{path.relative_to(root.parent)}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, where)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield Import(module, base, where)
            for alias in node.names:  # `from sqsbus import engine` imports sqsbus.engine
                yield Import(module, f"{base}.{alias.name}", where)


def _under(name: str, prefix: str) -> bool:
    return name == prefix.rstrip(".") or name.startswith(
        prefix if prefix.endswith(".") else prefix + "."
    )


def violations(rule: Rule, imports: list[Import]) -> list[str]:
    found = []
    for item in imports:
        if not _under(item.module, rule.importer) or any(
            _under(item.module, e) for e in rule.exempt
        ):
            continue
        if any(_under(item.target, a) for a in rule.allowed):
            continue
        if any(_under(item.target, f) for f in rule.forbidden):
            found.append(f"{item.where}: {item.module} imports {item.target}")
    return sorted(set(found))


def all_imports(root: Path) -> list[Import]:
    return [item for path in sorted(root.rglob("*.py")) for item in imports_of(path, root)]


@pytest.mark.parametrize("rule", RULES, ids=[rule.name for rule in RULES])
def test_layer_rule(rule: Rule) -> None:
    broken = violations(rule, all_imports(PACKAGE))
    assert not broken, f"{rule.name}:\n" + "\n".join(broken)


def test_the_rules_catch_what_they_forbid(tmp_path: Path) -> None:
    """A package with one import breaking each rule: every rule reports it."""
    root = tmp_path / "sqsbus"
    files = {
        "engine/bad.py": "from kombu import Connection\n",
        "queues.py": "from .engine import acker\n",
        "admin/bad.py": "from sqsbus.kombu.channel import Channel\n",
        "local/bad.py": "import sqsbus.config\n",
        "kombu/bad.py": "from sqsbus.testing import proxy\n",
        "testing/bad.py": "import sqsbus.aws\n",
        "routing/bad.py": "from sqsbus.demo import run\n",
        "cli.py": "import bench.run\n",
        "limits.py": "from sqsbus.errors import SQSBusError\n",
        "backoff.py": "import sqsbus.limits\n",
        "errors.py": "from sqsbus import limits\n",
        "engine/otel.py": "from opentelemetry import metrics\n",
        "telemetry.py": "from sqsbus.limits import MAX_BATCH_ENTRIES\n",
    }
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    imports = all_imports(root)
    reported = [{line.split(":")[0] for line in violations(rule, imports)} for rule in RULES]
    assert reported == [{f"sqsbus/{name}"} for name in files]


def test_the_command_line_loads_no_tooling() -> None:
    """``sqsbus`` and its command line import neither the demo, the testing tools nor Celery
    (``sqsbus demo`` imports the demo when it runs; the demo imports Celery when it runs)."""
    code = (
        "import sys, sqsbus, sqsbus.cli\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'celery'"
        " or m.startswith(('sqsbus.demo', 'sqsbus.testing'))))\n"
        "import sqsbus.demo\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'celery'))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=PACKAGE.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["[]", "[]"]
