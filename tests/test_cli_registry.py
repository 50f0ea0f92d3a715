"""Operator commands are declared once, in :mod:`sqsbus.admin.registry`: the CLI, ``sqsbus
--help``, ``sqsbus local``'s instructions, ``sqsbus.admin.__all__`` and the docs
must agree with it, so none of them can drift when a command is added or renamed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Final

import pytest

import sqsbus.admin
from sqsbus import cli
from sqsbus.admin import arguments, commands
from sqsbus.admin.registry import COMMANDS
from sqsbus.local import LocalEndpoint

ROOT: Final = Path(__file__).resolve().parents[1]
NAMES: Final = [command.name for command in COMMANDS]


def section(path: str, heading: str) -> str:
    """The text under ``heading`` (a whole ``## ...`` line) up to the next heading of its level."""
    text = (ROOT / path).read_text(encoding="utf-8")
    level = heading.split(" ", 1)[0]
    start = text.index(f"\n{heading}\n")
    end = text.find(f"\n{level} ", start + len(heading) + 2)
    return text[start : end if end != -1 else None]


def program(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "COLUMNS": "200"},  # one line per command in the help
    )


# -- the registry itself -------------------------------------------------------------------


def test_each_command_has_one_name_and_its_own_functions() -> None:
    assert len(set(NAMES)) == len(NAMES)
    for command in COMMANDS:
        assert command.add_arguments is getattr(arguments, f"{command.name}_arguments")
        assert command.call is getattr(commands, f"call_{command.name}")
        assert command.render is getattr(commands, f"render_{command.name}")


def test_admin_exports_the_function_of_every_command() -> None:
    for command in COMMANDS:
        name = command.api.__name__
        assert name in sqsbus.admin.__all__, f"sqsbus.admin.__all__ lacks {name}"
        assert getattr(sqsbus.admin, name) is command.api
    assert sorted(sqsbus.admin.__all__) == sqsbus.admin.__all__
    assert all(hasattr(sqsbus.admin, name) for name in sqsbus.admin.__all__)


# -- built from it -------------------------------------------------------------------------


def test_help_lists_every_registered_command() -> None:
    result = program("-m", "sqsbus", "--help")
    assert result.returncode == 0, result.stderr
    listed = re.findall(r"^ {4}(\w+) ", result.stdout, re.MULTILINE)
    assert listed == ["local", "demo", *NAMES]
    for command in COMMANDS:
        line = rf"^ {{4}}{command.name} +{re.escape(command.summary)}$"
        assert re.search(line, result.stdout, re.MULTILINE), result.stdout


def test_each_subcommand_has_the_registered_description(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for command in COMMANDS:
        with pytest.raises(SystemExit) as exited:
            cli.main([command.name, "--help"])
        assert exited.value.code == 0
        shown = " ".join(capsys.readouterr().out.split())
        assert f"usage: sqsbus {command.name} [-h] [-b URL] [-o KEY=VALUE]" in shown
        assert " ".join(command.description.split()) in shown


def test_importing_the_cli_does_not_import_celery() -> None:
    result = program(
        "-c",
        "import sys, sqsbus.cli; print(sorted(m for m in sys.modules if m.startswith('celery')))",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_local_names_every_operator_command() -> None:
    instructions = cli._local_instructions(LocalEndpoint(port=4566))
    line = next(line for line in instructions.splitlines() if line.startswith("While it runs"))
    assert re.findall(r"'(?:sqsbus )?(\w+)'", line) == NAMES


# -- checked against it --------------------------------------------------------------------


def test_operator_page_table_lists_every_command_in_order() -> None:
    commands_table = section("docs/operator-cli.md", "## Commands")
    assert re.findall(r"^\| `sqsbus (\w+)", commands_table, re.MULTILINE) == NAMES


def test_operator_page_names_the_api_function_of_every_command() -> None:
    api = section("docs/operator-cli.md", "## Python API")
    listed = re.search(r"one function per command:(.*?)\.", api, re.DOTALL)
    assert listed is not None
    assert re.findall(r"`(\w+)`", listed.group(1)) == [command.api.__name__ for command in COMMANDS]


def test_readme_names_every_operator_command() -> None:
    operating = section("README.md", "## Operating queues")
    assert re.findall(r"`(?:sqsbus )?(\w+)`", operating.split(" list ", 1)[0]) == NAMES


def test_architecture_page_names_every_admin_module() -> None:
    architecture = section("docs/architecture.md", "## Modules")
    modules = sorted(path.name for path in (ROOT / "sqsbus" / "admin").glob("*.py"))
    missing = [name for name in modules if name != "__init__.py" and name not in architecture]
    assert not missing


def test_security_doc_gives_the_operator_policy_for_every_command() -> None:
    text = (ROOT / "docs" / "security.md").read_text(encoding="utf-8")
    line = next(line for line in text.splitlines() if line.startswith("**Operator** ("))
    assert re.findall(r"`(?:sqsbus )?(\w+)`", line) == NAMES


def test_aws_resources_doc_gives_the_requests_of_every_command() -> None:
    table = section("docs/aws-resources.md", "## The operator commands")
    first_cells = re.findall(r"^\| ([^|]*) \|", table, re.MULTILINE)
    named = {word.split()[0] for cell in first_cells for word in re.findall(r"`([^`]+)`", cell)}
    assert named == set(NAMES)
