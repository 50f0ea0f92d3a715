"""``sqsbus completion bash|zsh``: scripts generated from the parser, loaded by real shells.

The bash script is loaded in a ``bash`` process and its function called the way bash calls it
on TAB (``COMP_WORDS``/``COMP_CWORD`` set, ``COMPREPLY`` read back); the zsh script is
checked by ``zsh -n`` and loaded into a ``zsh`` after ``compinit``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from typing import Final

import pytest

from sqsbus.admin.registry import COMMANDS

NAMES: Final = [command.name for command in COMMANDS]


def script(shell: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "sqsbus", "completion", shell],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stderr == ""
    return result.stdout


@pytest.fixture(scope="module")
def bash_script() -> str:
    return script("bash")


def complete(bash_script: str, *words: str) -> list[str]:
    """What bash offers for the command line ``words`` (the last one is being typed)."""
    quoted = " ".join("'" + word.replace("'", "'\\''") + "'" for word in words)
    program = f"""
eval "$SQSBUS_COMPLETION"
complete -p sqsbus >/dev/null || exit 3
COMP_WORDS=({quoted})
COMP_CWORD={len(words) - 1}
_sqsbus
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    result = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", program],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ, "SQSBUS_COMPLETION": bash_script},
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return [line for line in result.stdout.splitlines() if line]


def test_bash_completes_a_command(bash_script: str) -> None:
    assert complete(bash_script, "sqsbus", "pe") == ["peek"]
    assert complete(bash_script, "sqsbus", "p") == ["peek", "purge"]


def test_bash_offers_every_registered_command(bash_script: str) -> None:
    offered = complete(bash_script, "sqsbus", "")
    assert [name for name in offered if name in NAMES] == NAMES
    assert {"local", "demo", "completion", "--version"} <= set(offered)


def test_bash_completes_the_options_of_a_command(bash_script: str) -> None:
    assert complete(bash_script, "sqsbus", "peek", "--al") == ["--allow-dead-letter"]
    assert complete(bash_script, "sqsbus", "peek", "work", "--ti") == ["--timeout"]
    assert complete(bash_script, "sqsbus", "purge", "q", "--y") == ["--yes"]
    assert "--allow-dead-letter" not in complete(bash_script, "sqsbus", "purge", "--")


def test_bash_completes_fixed_values(bash_script: str) -> None:
    assert complete(bash_script, "sqsbus", "completion", "") == ["bash", "zsh"]
    assert complete(bash_script, "sqsbus", "queues", "-o", "queue_name_p") == ["queue_name_prefix="]
    assert complete(bash_script, "sqsbus", "move", "a", "b", "--no-p") == ["--no-progress"]
    # A free value (a broker URL) is not completed with option names.
    assert complete(bash_script, "sqsbus", "queues", "--broker", "") == []


def test_zsh_script_parses() -> None:
    zsh = shutil.which("zsh")
    if zsh is None:
        pytest.skip("zsh is not installed (apt-get install zsh)")
    text = script("zsh")
    assert text.startswith("#compdef sqsbus\n")
    for name in NAMES:
        assert f"({name})" in text
    result = subprocess.run(
        [zsh, "-n"], input=text, capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    # Loaded after compinit, as ~/.zshrc would: _sqsbus completes the sqsbus command.
    loaded = subprocess.run(
        [
            zsh,
            "-f",
            "-c",
            'autoload -U compinit; compinit -u -D; eval "$1"; print -r -- "$_comps[sqsbus]"',
            "zsh",
            text,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert (loaded.returncode, loaded.stdout, loaded.stderr) == (0, "_sqsbus\n", "")


def test_unknown_shell_is_refused() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sqsbus", "completion", "fish"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "invalid choice: 'fish' (choose from" in result.stderr
