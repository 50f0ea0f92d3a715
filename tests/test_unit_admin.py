"""Pure logic of the operator commands: options, broker choice, message summaries, tables."""

from __future__ import annotations

import ast
import base64
import io
import json
import pickle
import re
from pathlib import Path
from typing import Any

import pytest

from sqsbus import codec
from sqsbus.admin import commands
from sqsbus.admin.describe import summarize
from sqsbus.admin.render import ProgressBar, table, terminal_safe, terminal_text, to_json, truncate
from sqsbus.admin.session import AdminSession, BrokerChoice, choose_broker, parse_option_args
from sqsbus.errors import ConfigurationError
from sqsbus.local.record import clear_record, read_record, write_record


def wire(
    body: bytes,
    *,
    headers: dict[str, Any] | None = None,
    content_type: str = "application/json",
    base64_body: bool = True,
    base64_wire: bool = True,
) -> str:
    """A message body as Kombu puts it on SQS."""
    envelope = {
        "body": base64.b64encode(body).decode() if base64_body else body.decode(),
        "content-encoding": "utf-8",
        "content-type": content_type,
        "headers": headers or {},
        "properties": {"body_encoding": "base64" if base64_body else None, "delivery_info": {}},
    }
    return codec.encode_body(envelope, base64_encoding=base64_wire)


# -- options and broker --------------------------------------------------------------------


def test_option_values_are_json_when_they_parse_else_strings() -> None:
    options = parse_option_args(
        [
            "queue_name_prefix=prod-",
            "wait_time_seconds=5",
            "is_secure=false",
            'predefined_queues={"celery": {"url": "https://q"}}',
            "region=eu-west-1",
            "endpoint_url=http://localhost:4566",
        ]
    )
    assert options == {
        "queue_name_prefix": "prod-",
        "wait_time_seconds": 5,
        "is_secure": False,
        "predefined_queues": {"celery": {"url": "https://q"}},
        "region": "eu-west-1",
        "endpoint_url": "http://localhost:4566",
    }


@pytest.mark.parametrize("item", ["queue_name_prefix", "=x", ""])
def test_option_without_key_and_value_is_rejected(item: str) -> None:
    with pytest.raises(ConfigurationError, match="key=value"):
        parse_option_args([item])


def test_broker_precedence(tmp_path: Path) -> None:
    env = {"SQSBUS_STATE_DIR": str(tmp_path)}
    assert choose_broker(None, env).url == "sqsbus://"
    write_record("http://127.0.0.1:9", "sqsbus://testing:testing@127.0.0.1:9", env)
    assert choose_broker(None, env).url == "sqsbus://testing:testing@127.0.0.1:9"
    env["CELERY_BROKER_URL"] = "sqs://"
    assert choose_broker(None, env) == BrokerChoice("sqs://", "CELERY_BROKER_URL")
    env["SQSBUS_BROKER_URL"] = "sqsbus://a:b@h"
    assert choose_broker(None, env).source == "SQSBUS_BROKER_URL"
    assert choose_broker("sqsbus://x:y@z", env) == BrokerChoice("sqsbus://x:y@z", "--broker")


def test_record_of_a_dead_process_is_ignored_and_removed(tmp_path: Path) -> None:
    env = {"SQSBUS_STATE_DIR": str(tmp_path)}
    path = write_record("http://127.0.0.1:9", "sqsbus://t:t@127.0.0.1:9", env)
    assert read_record(env) is not None
    dead = tmp_path / "local-endpoint-4194305.json"
    path.rename(dead)
    dead.write_text(json.dumps({"pid": 2**22 + 1, "url": "u", "broker_url": "b"}))
    clear_record(env)  # not ours: left alone
    assert dead.exists()
    assert read_record(env) is None
    assert not dead.exists()


def test_broker_url_parts_become_transport_settings() -> None:
    session = AdminSession.connect(
        BrokerChoice("sqsbus://KEY:se%2Fcret@127.0.0.1:4566", "test"),
        {"queue_name_prefix": "prod.", "region": "eu-west-1"},
    )
    options = session.options
    assert options.endpoint_url == "http://127.0.0.1:4566"
    assert options.access_key_id == "KEY"
    assert options.secret_access_key is not None
    assert options.secret_access_key.reveal() == "se/cret"
    assert session.prefix == "prod-"
    assert session.short_name("prod-celery") == "celery"
    assert "se/cret" not in session.where()


@pytest.mark.parametrize("url", ["amqp://guest@localhost//", "redis://", "sqsbus://h:notaport"])
def test_other_brokers_are_refused(url: str) -> None:
    with pytest.raises(ConfigurationError, match="broker URL"):
        AdminSession.connect(BrokerChoice(url, "test"))


# -- message summaries ---------------------------------------------------------------------


@pytest.mark.parametrize("base64_wire", [True, False])
def test_celery_protocol_2(base64_wire: bool) -> None:
    body = json.dumps([[1, "two"], {"three": 3}, {"callbacks": None}]).encode()
    headers = {"task": "proj.add", "id": "abc", "argsrepr": "ignored"}
    summary = summarize(wire(body, headers=headers, base64_wire=base64_wire))
    assert (summary.kind, summary.task, summary.task_id) == ("celery", "proj.add", "abc")
    assert (summary.args, summary.kwargs) == ([1, "two"], {"three": 3})
    assert summary.text == '(1, "two", three=3)'


def test_celery_protocol_1() -> None:
    body = json.dumps({"task": "proj.old", "id": "x1", "args": [4], "kwargs": {}}).encode()
    summary = summarize(wire(body))
    assert (summary.task, summary.task_id, summary.args) == ("proj.old", "x1", [4])


def test_pickled_celery_task_uses_its_repr_headers_and_is_never_unpickled() -> None:
    body = pickle.dumps(((1, 2), {"k": 3}, {}))
    headers = {"task": "proj.add", "id": "p1", "argsrepr": "(1, 2)", "kwargsrepr": "{'k': 3}"}
    summary = summarize(wire(body, headers=headers, content_type="application/x-python-serialize"))
    assert summary.task == "proj.add"
    assert summary.args is None
    assert summary.text == "args=(1, 2) kwargs={'k': 3}"


def test_plain_kombu_message() -> None:
    summary = summarize(wire(b'{"hello": "world"}', base64_body=False))
    assert (summary.kind, summary.task, summary.text) == ("kombu", None, '{"hello": "world"}')


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        ("plain text\nwith a newline", "text"),
        ('{"not": "kombu"}', "json"),
        ("", "text"),
        ("\x00\x01binary", "text"),
    ],
)
def test_foreign_bodies_are_shown_raw_on_one_line(raw: str, kind: str) -> None:
    summary = summarize(raw)
    assert summary.kind == kind
    assert "\n" not in summary.text and "\x00" not in summary.text


def test_broken_envelopes_never_raise() -> None:
    not_base64 = codec.encode_body(
        {"body": "%%%", "headers": {"task": "t"}, "properties": {"body_encoding": "base64"}},
        base64_encoding=False,
    )
    assert summarize(not_base64).text == "<body is not valid base64>"
    bad_json = wire(b"{nope", headers={"task": "t", "id": "1"})
    assert summarize(bad_json).text == "<body is not valid JSON>"
    odd_headers = codec.encode_body(
        {"body": 3, "headers": ["x"], "properties": {}}, base64_encoding=False
    )
    assert summarize(odd_headers).kind == "kombu"


# -- rendering -----------------------------------------------------------------------------


def test_table_aligns_and_truncates() -> None:
    text = table(["NAME", "N"], [["a", "1"], ["long name", "100"]], right={1}, widths={0: 6})
    assert text.splitlines() == ["NAME      N", "a         1", "lon...  100"]
    assert truncate("one\ntwo   three", 40) == "one two three"


#: A C0 or C1 control character, DEL, or a bidirectional override, embedding or isolate.
UNSAFE_CHAR = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("\x1b]0;pwned\x07", "\\x1b]0;pwned\\x07"),  # retitles the terminal (OSC)
        ("\x1b[2Jclear", "\\x1b[2Jclear"),  # clears the screen (CSI)
        ("\x9b2J", "\\x9b2J"),  # the one-character C1 CSI
        ("\x90q\x9c", "\\x90q\\x9c"),  # C1 DCS ... ST
        ("\x85next", "\\x85next"),  # C1 NEL
        ("\x00nul\x08bs\x7fdel", "\\x00nul\\x08bs\\x7fdel"),
        ("a\nb\rc\td", "a\\nb\\rc\\td"),  # a cell stays one line
        ("safe\u202etxt.exe", "safe\\u202etxt.exe"),  # right-to-left override
        ("\u2066x\u2069 \u202a\u202c", "\\u2066x\\u2069 \\u202a\\u202c"),  # isolates, embeddings
        ("proj.tasks.add", "proj.tasks.add"),
        # Plain text is untouched, backslashes included.
        ("café ☕ 🐍 日本語 \\x1b", "café ☕ 🐍 日本語 \\x1b"),
        ("", ""),
    ],
)
def test_terminal_safe_escapes_control_characters_visibly(text: str, shown: str) -> None:
    assert terminal_safe(text) == shown
    assert not UNSAFE_CHAR.search(terminal_safe(text))
    assert terminal_safe(shown) == shown  # applying it twice changes nothing


def test_every_c0_c1_and_bidi_character_is_escaped() -> None:
    unsafe = [*map(chr, range(0x20)), *map(chr, range(0x7F, 0xA0))]
    unsafe += [*map(chr, range(0x202A, 0x202F)), *map(chr, range(0x2066, 0x206A))]
    for char in unsafe:
        shown = terminal_safe(char)
        assert shown.startswith("\\") and shown.isprintable(), repr(char)


def test_free_text_keeps_its_lines_but_nothing_else() -> None:
    assert terminal_text("first\x1b[2J\nsecond\x9b") == "first\\x1b[2J\nsecond\\x9b"


def test_json_output_escapes_what_json_dumps_leaves_raw() -> None:
    value = {"task": "a\x1b[2J\x7f\x9b2J\u202e", "note": "café 🐍"}
    text = to_json(value)
    assert not UNSAFE_CHAR.search(text.replace("\n", ""))
    assert "\\u009b" in text and "café 🐍" in text
    assert json.loads(text) == value


def test_table_cells_headers_and_progress_label_are_made_safe() -> None:
    hostile = "evil\x1b]0;pwned\x07\x9b2J\u202e"
    text = table(["QUEUE\x1b[2J", "N"], [[hostile, "1"], ["ok", "22"]], right={1}, widths={0: 60})
    shown = "evil\\x1b]0;pwned\\x07\\x9b2J\\u202e"  # 32 characters, the widest cell
    assert text.splitlines() == [
        "QUEUE\\x1b[2J".ljust(32) + "   N",
        shown + "   1",
        "ok".ljust(32) + "  22",
    ]
    stream = io.StringIO()
    bar = ProgressBar(stream, f"{hostile} -> x", enabled=True)
    bar.update(1, 2, force=True)
    assert "evil\\x1b]0;pwned\\x07" in stream.getvalue()
    assert not UNSAFE_CHAR.search(stream.getvalue().replace("\r", "").replace("\x1b[K", ""))


def test_summaries_show_control_characters_of_a_body_visibly() -> None:
    summary = summarize("line one\r\nline\ttwo \x1b[31mred\x9b")
    assert summary.text == "line one  line two \\x1b[31mred\\x9b"


def test_commands_print_only_through_the_sanitising_helpers() -> None:
    """A new command cannot print around the terminal sanitiser by calling print itself."""
    tree = ast.parse(Path(commands.__file__).read_text(encoding="utf-8"))
    printing = {
        function.name
        for function in ast.walk(tree)
        if isinstance(function, ast.FunctionDef)
        for node in ast.walk(function)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "print"
    }
    assert printing == {"_out", "_json"}


def test_requests_are_bounded_unless_configured() -> None:
    broker = BrokerChoice("sqsbus://k:s@127.0.0.1:1", "test")
    bounded = AdminSession.connect(broker).options.client_config
    assert (bounded["connect_timeout"], bounded["read_timeout"]) == (10, 10)
    assert bounded["retries"] == {"mode": "standard", "total_max_attempts": 2}
    assert AdminSession.connect(broker, timeout=3).options.client_config["read_timeout"] == 3
    configured = AdminSession.connect(broker, {"client-config": {"connect_timeout": 2}})
    assert configured.options.client_config["connect_timeout"] == 2
    assert configured.options.client_config["read_timeout"] == 10
