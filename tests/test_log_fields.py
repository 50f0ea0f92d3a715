"""Structured log fields: every sqsbus log record about a message carries them.

A guard reads the source: each logger call in the runtime whose text speaks of a message or
a payload passes ``extra=`` built by :func:`sqsbus.log_fields.message_fields` (directly, or
through ``Received.log_fields``/``batch_log_fields``), so new code cannot forget them. Real
scenarios then check the fields on the records themselves; the helper's unit tests check
that what comes from messages is bounded and sanitised.
"""

from __future__ import annotations

import ast
import logging
from pathlib import Path
from typing import Final

import pytest

from sqsbus import log_fields
from sqsbus.engine.messages import Received, batch_log_fields
from sqsbus.log_fields import FIELDS, MAX_FIELD_LENGTH, message_fields
from sqsbus.queues import QueueRef
from sqsbus.redact import forget_secret, register_secret

PACKAGE: Final = Path(__file__).resolve().parent.parent / "sqsbus"
#: The runtime: everything that handles messages (not the operator tooling, which prints).
RUNTIME: Final = ("engine", "kombu", "routing", "queues.py", "expiry.py")
LOG_METHODS: Final = frozenset({"debug", "info", "warning", "error", "exception", "critical"})
#: Functions whose result is an ``extra`` with the fields.
FIELD_BUILDERS: Final = frozenset({"message_fields", "log_fields", "batch_log_fields"})
MENTIONS: Final = ("message", "payload")


def runtime_files() -> list[Path]:
    files: list[Path] = []
    for part in RUNTIME:
        path = PACKAGE / part
        files.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    return files


def log_text(call: ast.Call) -> str:
    """The message text of a logging call (string literals of its first argument)."""
    if not call.args:
        return ""
    return " ".join(
        node.value
        for node in ast.walk(call.args[0])
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    )


def builds_fields(call: ast.Call) -> bool:
    for keyword in call.keywords:
        if keyword.arg == "extra" and isinstance(keyword.value, ast.Call):
            func = keyword.value.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            return name in FIELD_BUILDERS
    return False


def unfielded_calls() -> list[str]:
    missing: list[str] = []
    for path in runtime_files():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in LOG_METHODS
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "logger"
            ):
                continue
            text = log_text(node).lower()
            if any(word in text for word in MENTIONS) and not builds_fields(node):
                missing.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {text[:60]!r}")
    return missing


def test_every_log_call_about_a_message_passes_the_fields() -> None:
    assert len(runtime_files()) > 20
    assert unfielded_calls() == [], (
        "log calls about messages without extra=message_fields(...) / received.log_fields(...)"
    )


def test_the_guard_finds_a_call_without_fields(tmp_path: Path) -> None:
    call = ast.parse('logger.warning("message %s lost", mid)').body[0]
    assert isinstance(call, ast.Expr) and isinstance(call.value, ast.Call)
    assert not builds_fields(call.value)
    fielded = ast.parse('logger.warning("message %s", m, extra=m.log_fields("lease"))').body[0]
    assert isinstance(fielded, ast.Expr) and isinstance(fielded.value, ast.Call)
    assert builds_fields(fielded.value)


# -- the helper ----------------------------------------------------------------------------


def test_the_fields_are_all_there_and_collide_with_nothing() -> None:
    fields = message_fields("dead-letter", queue="orders", message_id="m-1", attempt=3)
    assert fields == {
        "sqsbus_queue": "orders",
        "sqsbus_message_id": "m-1",
        "sqsbus_operation": "dead-letter",
        "sqsbus_attempt": 3,
    }
    assert set(message_fields("send")) == set(FIELDS)
    reserved = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
    assert not reserved & set(FIELDS)
    # logging refuses extra keys that overwrite a record's own: these go through.
    logging.getLogger("sqsbus.test").makeRecord(
        "sqsbus.test", logging.INFO, __file__, 1, "x", None, None, extra=fields
    )


def test_text_from_messages_is_bounded_and_printable() -> None:
    fields = message_fields("deliver", queue="q\n\x1b[31mred", message_id="x" * 100_000, attempt=-1)
    assert fields["sqsbus_queue"] == "q??[31mred"
    message_id = fields["sqsbus_message_id"]
    assert isinstance(message_id, str) and len(message_id) == MAX_FIELD_LENGTH
    assert fields["sqsbus_attempt"] is None


def test_registered_secrets_never_reach_a_field() -> None:
    register_secret("SECRETKEY1234567")
    try:
        fields = message_fields("send", queue="q-SECRETKEY1234567")
    finally:
        forget_secret("SECRETKEY1234567")
    assert fields["sqsbus_queue"] == "q-***"


def test_an_unknown_operation_is_a_bug_named_at_once() -> None:
    with pytest.raises(ValueError, match="unknown sqsbus log operation 'ack'"):
        message_fields("ack")
    assert "dead-letter" in log_fields.OPERATIONS


def test_a_batch_record_names_every_message_and_a_parked_one_its_home() -> None:
    orders = QueueRef("orders", "https://sqs/1/orders", client=None)
    parking = QueueRef("sqsbus-parking-x", "https://sqs/1/sqsbus-parking-x", client=None)
    first = Received(orders, "orders", "m-1", "h1", "", {"ApproximateReceiveCount": "2"})
    second = Received(parking, "orders", "m-2", "h2", "", home=orders)
    assert batch_log_fields([first, second], "delete", attempt=3) == {
        "sqsbus_queue": "orders",
        "sqsbus_message_id": "m-1,m-2",
        "sqsbus_operation": "delete",
        "sqsbus_attempt": 3,
    }
    assert second.log_fields("send-home")["sqsbus_queue"] == "orders"
    assert batch_log_fields([first], "lease")["sqsbus_attempt"] == 2
