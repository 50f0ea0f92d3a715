"""One path for each kind of SQS write, checked on the source with :mod:`ast`.

* Sends (``SendMessage``/``SendMessageBatch``) are made only by the group commit, which
  :class:`~sqsbus.engine.publisher.Publisher` feeds (copies of received messages included:
  ``Publisher.resend``/``resend_all``).
* Deletes and visibility changes are made only by :mod:`sqsbus.engine.operations`, whose
  ``delete``/``change_visibility``/``release`` are called only by the acker and by the
  callers its docstring lists as the documented exception.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import sqsbus

PACKAGE: Final = Path(sqsbus.__file__).resolve().parent

#: botocore operation -> the only module allowed to name it.
OPERATION_HOMES: Final = {
    "send_message": "sqsbus.engine.group_commit",
    "send_message_batch": "sqsbus.engine.group_commit",
    "delete_message": "sqsbus.engine.operations",
    "delete_message_batch": "sqsbus.engine.operations",
    "change_message_visibility": "sqsbus.engine.operations",
    "change_message_visibility_batch": "sqsbus.engine.operations",
}
#: Functions of sqsbus.engine.operations that delete or change visibility.
SETTLING_FUNCTIONS: Final = frozenset({"delete", "change_visibility", "release"})
#: Who may call them (sqsbus.engine.operations' docstring says why).
SETTLING_CALLERS: Final = frozenset(
    {
        "sqsbus.engine.acker",  # the data path
        "sqsbus.engine.leases",  # synchronous: each extension's answer
        "sqsbus.engine.parking",  # synchronous: no on_deleted for originals
        "sqsbus.engine.receiver",  # release of messages never handed out
        "sqsbus.admin.peek",  # operator tools: per-message results
        "sqsbus.admin.transfer",
    }
)


def modules(root: Path) -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(root.rglob("*.py")):
        name = ".".join(path.relative_to(root.parent).with_suffix("").parts)
        yield name, ast.parse(path.read_text(encoding="utf-8"), str(path))


def operation_names(tree: ast.Module) -> set[str]:
    """botocore operations a module names: as a string (``call(c, "op")``) or attribute."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and node.value in OPERATION_HOMES:
            names.add(str(node.value))
        elif isinstance(node, ast.Attribute) and node.attr in OPERATION_HOMES:
            names.add(node.attr)
    return names


def settling_uses(tree: ast.Module) -> set[str]:
    """The settling functions of sqsbus.engine.operations a module uses."""
    used = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr in SETTLING_FUNCTIONS
            and isinstance(node.value, ast.Name)
            and node.value.id == "operations"
        ):
            used.add(node.attr)
        elif isinstance(node, ast.ImportFrom) and node.module == "sqsbus.engine.operations":
            used |= {alias.name for alias in node.names} & SETTLING_FUNCTIONS
    return used


def misplaced(root: Path) -> list[str]:
    found = []
    for module, tree in modules(root):
        for operation in sorted(operation_names(tree)):
            if OPERATION_HOMES[operation] != module:
                found.append(f"{module} names {operation}")
        if module != "sqsbus.engine.operations" and module not in SETTLING_CALLERS:
            found += [f"{module} calls operations.{name}" for name in sorted(settling_uses(tree))]
    return found


def test_each_sqs_write_has_one_path() -> None:
    assert misplaced(PACKAGE) == []


def test_the_check_sees_writes_off_the_path(tmp_path: Path) -> None:
    root = tmp_path / "sqsbus"
    (root / "admin").mkdir(parents=True)
    (root / "admin" / "tool.py").write_text(
        "from sqsbus.aws import call\n"
        "from sqsbus.engine import operations\n"
        "def f(q):\n"
        "    call(q.client, 'send_message_batch', 'x', Entries=[])\n"
        "    q.client.delete_message(QueueUrl=q.url)\n"
        "    operations.change_visibility(q, [], 0)\n"
    )
    (root / "kombu.py").write_text("from sqsbus.engine.operations import release\n")
    assert misplaced(root) == [
        "sqsbus.admin.tool names delete_message",
        "sqsbus.admin.tool names send_message_batch",
        "sqsbus.admin.tool calls operations.change_visibility",
        "sqsbus.kombu calls operations.release",
    ]
