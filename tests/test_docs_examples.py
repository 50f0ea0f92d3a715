"""The first Celery app of the README and of docs/getting-started.md works as pasted: the same
code in both places, run by a real worker against an embedded endpoint (only the endpoint's
port and the queue prefix are changed, so that the test has its own)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Final

import pytest

from sqsbus.local import LocalEndpoint
from sqsbus.testing.worker import CeleryWorker

pytestmark = [pytest.mark.celery, pytest.mark.timeout(180)]

ROOT: Final = Path(__file__).resolve().parents[1]
#: The broker URL of `sqsbus local --port 4566`, as the examples give it.
EXAMPLE_BROKER: Final = "sqsbus://testing:testing@127.0.0.1:4566"


def first_celery_app(path: str) -> str:
    """The ```python block of ``path`` that defines the ``tasks`` app."""
    text = (ROOT / path).read_text(encoding="utf-8")
    blocks = re.findall(r"^```python\n(.*?)^```$", text, re.MULTILINE | re.DOTALL)
    found = [block for block in blocks if 'Celery("tasks"' in block]
    assert len(found) == 1, f"{path}: expected one block with the tasks app, found {len(found)}"
    return str(found[0])


def test_the_readme_shows_the_getting_started_app() -> None:
    assert first_celery_app("README.md") == first_celery_app("docs/getting-started.md")


def test_the_first_celery_app_runs_as_pasted(
    endpoint: LocalEndpoint, prefix: str, tmp_path: Path
) -> None:
    code = first_celery_app("docs/getting-started.md")
    assert EXAMPLE_BROKER in code
    code, count = re.subn(r'"queue_name_prefix": "[^"]*"', f'"queue_name_prefix": "{prefix}"', code)
    assert count == 1
    (tmp_path / "tasks.py").write_text(code.replace(EXAMPLE_BROKER, endpoint.broker_url()))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
    }
    # As the page says: `celery -A tasks worker --loglevel=info` in the directory of tasks.py.
    worker = CeleryWorker(
        "tasks",
        tmp_path / "worker.log",
        name="docs",
        loglevel="INFO",
        options=(),
        env=env,
        cwd=tmp_path,
    )
    with worker:
        client = subprocess.run(
            [
                sys.executable,
                "-c",
                "from tasks import add; print(add.delay(2, 3).get(timeout=30))",
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        assert client.returncode == 0, f"{client.stderr}\nworker log:\n{worker.log_tail()}"
        assert client.stdout.strip() == "5"
