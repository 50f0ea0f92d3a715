"""The operator commands (``sqsbus queues/peek/purge/move/redrive``) against the endpoint.

Messages are published the way applications publish them (Celery's ``send_task`` and Kombu
through the sqsbus transport, or plain boto3 for foreign ones); the commands run through
:func:`sqsbus.cli.main` in-process, and once as a real subprocess.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from celery import Celery
from kombu_helpers import connect, direct_queue, publish, wait_until

from sqsbus import cli, codec
from sqsbus.admin import summarize
from sqsbus.local import LocalEndpoint
from sqsbus.local.record import write_record


@dataclass
class Outcome:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


Run = Callable[..., Outcome]


@pytest.fixture
def run(
    endpoint: LocalEndpoint,
    prefix: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> Run:
    """``run("peek", "work", stdin="y\\n")``: the command on this test's queues, in-process."""

    def invoke(*args: str, stdin: str = "") -> Outcome:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        capsys.readouterr()
        argv = [*args, "--broker", endpoint.broker_url(), "-o", f"queue_name_prefix={prefix}"]
        code = cli.main(argv)
        captured = capsys.readouterr()
        return Outcome(code, captured.out, captured.err)

    return invoke


@pytest.fixture
def celery_app(endpoint: LocalEndpoint, prefix: str) -> Iterator[Celery]:
    """A Celery producer on the endpoint with this test's queue prefix."""
    app = Celery("ops", broker=endpoint.broker_url(), set_as_current=False)
    app.conf.broker_transport_options = {"queue_name_prefix": prefix, "wait_time_seconds": 1}
    yield app
    app.close()


def queue_url(sqs_client: Any, prefix: str, name: str) -> str:
    return str(sqs_client.get_queue_url(QueueName=prefix + name)["QueueUrl"])


def counts(sqs_client: Any, url: str) -> tuple[int, int]:
    """(visible, in flight)."""
    attributes = sqs_client.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])
    values = attributes["Attributes"]
    return (
        int(values["ApproximateNumberOfMessages"]),
        int(values["ApproximateNumberOfMessagesNotVisible"]),
    )


def receive_all(sqs_client: Any, url: str, *, release: bool = False) -> list[dict[str, Any]]:
    """Every message of the queue (held invisible, or made visible again with ``release``)."""
    messages: list[dict[str, Any]] = []
    while True:
        answer = sqs_client.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=0,  # moto answers with every visible message, even without waiting
            VisibilityTimeout=60,
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
        )
        batch = answer.get("Messages") or []
        if not batch:
            break
        messages.extend(batch)
    if release and messages:
        for start in range(0, len(messages), 10):
            sqs_client.change_message_visibility_batch(
                QueueUrl=url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                    for i, m in enumerate(messages[start : start + 10])
                ],
            )
    return messages


def content(messages: list[dict[str, Any]]) -> Counter[str]:
    """What a move must keep: each body with its message attributes."""
    return Counter(
        json.dumps(
            [m["Body"], {k: repr(v) for k, v in sorted((m.get("MessageAttributes") or {}).items())}]
        )
        for m in messages
    )


def create_with_dead_letters(
    sqs_client: Any, prefix: str, name: str, max_receive_count: int
) -> tuple[str, str]:
    """Queue ``name`` whose RedrivePolicy sends dead letters to ``name-dlq``; both URLs."""
    dlq = sqs_client.create_queue(QueueName=f"{prefix}{name}-dlq")["QueueUrl"]
    arn = sqs_client.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])
    policy = {
        "deadLetterTargetArn": arn["Attributes"]["QueueArn"],
        "maxReceiveCount": str(max_receive_count),
    }
    source = sqs_client.create_queue(
        QueueName=prefix + name, Attributes={"RedrivePolicy": json.dumps(policy)}
    )["QueueUrl"]
    return source, dlq


# -- sqsbus queues -------------------------------------------------------------------------


def test_queues_lists_counts_fifo_and_dead_letters(
    run: Run, celery_app: Celery, sqs_client: Any, prefix: str
) -> None:
    create_with_dead_letters(sqs_client, prefix, "jobs", 5)
    sqs_client.create_queue(QueueName=f"{prefix}orders.fifo", Attributes={"FifoQueue": "true"})
    for number in range(3):
        celery_app.send_task("proj.tasks.add", args=(number, 1), queue="jobs")
    sqs_client.create_queue(QueueName=f"other-{prefix}unrelated")

    listed = run("queues", "--json")
    assert listed.code == 0, listed.err
    by_name = {queue["name"]: queue for queue in listed.json()}
    assert set(by_name) == {"jobs", "jobs-dlq", "orders.fifo"}
    jobs = by_name["jobs"]
    assert (jobs["visible"], jobs["in_flight"], jobs["delayed"]) == (3, 0, 0)
    assert jobs["sqs_name"] == f"{prefix}jobs"
    assert jobs["dead_letter"]["queue"] == f"{prefix}jobs-dlq"
    assert jobs["dead_letter"]["max_receive_count"] == 5
    assert by_name["jobs-dlq"]["dead_letter_for"] == [f"{prefix}jobs"]
    assert by_name["orders.fifo"]["fifo"] is True
    assert by_name["jobs"]["fifo"] is False

    shown = run("queues")
    assert shown.code == 0, shown.err
    header, *rows = shown.out.split("\n\n")[0].splitlines()
    assert header.split()[:2] == ["QUEUE", "VISIBLE"]
    jobs_row = next(row for row in rows if row.startswith("jobs "))
    assert jobs_row.split()[:5] == ["jobs", "3", "0", "0", "no"]
    assert "-> jobs-dlq after 5 receives" in jobs_row
    assert "DLQ of jobs" in next(row for row in rows if row.startswith("jobs-dlq"))
    assert "3 queue(s)" in shown.out


def test_queues_with_predefined_queues_lists_only_those(
    endpoint: LocalEndpoint, sqs_client: Any, prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = sqs_client.create_queue(QueueName=prefix + "defined")["QueueUrl"]
    sqs_client.create_queue(QueueName=prefix + "not-defined")
    sqs_client.send_message(QueueUrl=url, MessageBody="x")
    predefined = json.dumps({"celery": {"url": url}})
    code = cli.main(
        ["queues", "--json", "-b", endpoint.broker_url(), "-o", f"predefined_queues={predefined}"]
    )
    listed = json.loads(capsys.readouterr().out)
    assert code == 0
    assert [(q["name"], q["visible"]) for q in listed] == [("celery", 1)]


# -- sqsbus peek ---------------------------------------------------------------------------


def test_peek_shows_tasks_and_leaves_them_in_the_queue(
    run: Run, celery_app: Celery, sqs_client: Any, prefix: str
) -> None:
    sent = [
        celery_app.send_task(
            "proj.tasks.add", args=(n, 2), kwargs={"note": "x" * 200}, queue="work"
        )
        for n in range(3)
    ]
    url = queue_url(sqs_client, prefix, "work")

    peeked = run("peek", "work", "--json")
    assert peeked.code == 0, peeked.err
    messages = peeked.json()["messages"]
    assert [(m["task"], m["task_id"]) for m in messages] == [
        ("proj.tasks.add", result.id) for result in sent
    ]
    assert [m["args"] for m in messages] == [[0, 2], [1, 2], [2, 2]]
    assert all(m["kwargs"] == {"note": "x" * 200} and m["receive_count"] == 1 for m in messages)
    assert "receive" in peeked.err  # says that peeking counted a receive

    table = run("peek", "work", "-n", "2")
    assert table.code == 0, table.err
    lines = table.out.splitlines()
    assert len(lines) == 3  # header and two messages
    assert "proj.tasks.add" in lines[1] and sent[0].id in lines[1]
    assert "(0, 2, note=" in lines[1] and "..." in lines[1]  # long arguments are truncated

    assert counts(sqs_client, url) == (3, 0)
    still_there = receive_all(sqs_client, url)
    # Each peek counted one receive: the first saw all three, the second two of them.
    receive_counts = sorted(int(m["Attributes"]["ApproximateReceiveCount"]) for m in still_there)
    assert receive_counts == [2, 3, 3]


def test_peek_shows_plain_and_foreign_bodies_without_failing(
    run: Run, endpoint: LocalEndpoint, sqs_client: Any, prefix: str
) -> None:
    with connect(endpoint, prefix) as conn:
        publish(conn, direct_queue("mixed"), [{"hello": "world"}])
    url = queue_url(sqs_client, prefix, "mixed")
    sqs_client.send_message(QueueUrl=url, MessageBody="not kombu\n\x1b[31m at all")
    sqs_client.send_message(QueueUrl=url, MessageBody='{"foreign": ["json"]}')

    peeked = run("peek", "mixed")
    assert peeked.code == 0, peeked.err
    rows = peeked.out.splitlines()[1:]
    assert len(rows) == 3
    assert any("(kombu)" in row and '{"hello": "world"}' in row for row in rows)
    assert any("(text)" in row and "not kombu" in row and "\x1b" not in row for row in rows)
    assert any("(json)" in row and '"foreign"' in row for row in rows)
    assert counts(sqs_client, url) == (3, 0)


#: Escape sequences a message may carry to the operator's terminal: retitle it (OSC ... BEL),
#: clear the screen (CSI, and the one-character C1 CSI). The test adds a carriage return (to
#: hide text) and a right-to-left override (to reorder it).
TITLE, CLEAR, C1_CLEAR = "\x1b]0;pwned\x07", "\x1b[2J", "\x9b2J"
#: A raw control character in output: C0 except the line break, DEL, C1, or a bidi override.
RAW_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def test_peek_shows_escape_sequences_of_a_message_without_running_them(
    run: Run, sqs_client: Any, prefix: str
) -> None:
    headers = {
        "task": f"proj.{TITLE}evil",
        "id": f"id-{C1_CLEAR}-1",
        "eta": f"2030-01-01{CLEAR}\rnow",
        "argsrepr": "x",
    }
    envelope = {
        "body": base64.b64encode(json.dumps([[f"arg{CLEAR}{C1_CLEAR}"], {}, {}]).encode()).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": headers,
        "properties": {"body_encoding": "base64", "delivery_info": {}},
    }
    url = sqs_client.create_queue(QueueName=prefix + "hostile")["QueueUrl"]
    reason = f"failed: {TITLE}\u202egnp.exe{C1_CLEAR}"
    sqs_client.send_message(
        QueueUrl=url,
        MessageBody=codec.encode_body(envelope, base64_encoding=True),
        MessageAttributes={
            "sqsbus.dead-letter-reason": {"DataType": "String", "StringValue": reason}
        },
    )

    peeked = run("peek", "hostile")
    assert peeked.code == 0, peeked.err
    assert not RAW_CONTROL.search(peeked.out + peeked.err)
    header, row = peeked.out.splitlines()
    assert header.split()[-2:] == ["DEAD-LETTER", "REASON"] and "ETA" in header
    assert "proj.\\x1b]0;pwned\\x07evil" in row
    assert "id-\\x9b2J-1" in row
    assert "2030-01-01\\x1b[2J\\rnow" in row
    assert '("arg\\u001b[2J\\x9b2J")' in row  # JSON arguments: ESC was escaped already
    assert "failed: \\x1b]0;pwned\\x07\\u202egnp.exe\\x9b2J" in row

    as_json = run("peek", "hostile", "--json")
    assert as_json.code == 0, as_json.err
    assert not RAW_CONTROL.search(as_json.out.replace("\n", "") + as_json.err)
    (message,) = as_json.json()["messages"]  # the values themselves, unchanged
    assert (message["task"], message["task_id"], message["eta"]) == (
        headers["task"],
        headers["id"],
        headers["eta"],
    )
    assert message["dead_letter_reason"] == reason


def test_peek_frees_fifo_message_groups(run: Run, sqs_client: Any, prefix: str) -> None:
    url = sqs_client.create_queue(
        QueueName=f"{prefix}steps.fifo",
        Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"},
    )["QueueUrl"]
    for step in ("first", "second"):
        sqs_client.send_message(QueueUrl=url, MessageBody=step, MessageGroupId="order-7")

    peeked = run("peek", "steps.fifo", "--json")
    assert peeked.code == 0, peeked.err
    assert [(m["group_id"], m["summary"]) for m in peeked.json()["messages"]] == [
        ("order-7", "first"),
        ("order-7", "second"),
    ]
    # The group is not left blocked: a consumer gets its messages at once, in order.
    answer = sqs_client.receive_message(QueueUrl=url, MaxNumberOfMessages=10)
    assert [m["Body"] for m in answer["Messages"]] == ["first", "second"]


def test_peek_guards_the_dead_letter_limit(run: Run, sqs_client: Any, prefix: str) -> None:
    once, _ = create_with_dead_letters(sqs_client, prefix, "fragile", 1)
    sqs_client.send_message(QueueUrl=once, MessageBody="only one delivery")
    refused = run("peek", "fragile")
    assert refused.code == 1
    assert "--allow-dead-letter" in refused.err and "Traceback" not in refused.err
    untouched = receive_all(sqs_client, once, release=True)
    assert [m["Attributes"]["ApproximateReceiveCount"] for m in untouched] == ["1"]

    twice, _ = create_with_dead_letters(sqs_client, prefix, "guarded", 2)
    for number in range(3):
        sqs_client.send_message(QueueUrl=twice, MessageBody=f"message {number}")
    first = run("peek", "guarded", "--json")
    assert first.code == 0, first.err
    assert len(first.json()["messages"]) == 3
    assert not any(m["at_dead_letter_limit"] for m in first.json()["messages"])

    second = run("peek", "guarded", "--json")
    assert second.code == 0, second.err
    result = second.json()
    assert result["stopped_at_limit"] is True
    assert [m["at_dead_letter_limit"] for m in result["messages"]] == [True]
    assert "moves them to the dead-letter queue" in second.err
    assert counts(sqs_client, twice) == (3, 0)


# -- sqsbus purge --------------------------------------------------------------------------


def test_purge_asks_before_deleting(
    run: Run, endpoint: LocalEndpoint, sqs_client: Any, prefix: str
) -> None:
    with connect(endpoint, prefix) as conn:
        publish(conn, direct_queue("trash"), [{"n": n} for n in range(3)])
        publish(conn, direct_queue("junk"), [{"n": n} for n in range(2)])
    trash = queue_url(sqs_client, prefix, "trash")

    declined = run("purge", "trash", stdin="n\n")
    assert declined.code == 1
    assert "3 visible" in declined.err and "nothing was purged" in declined.err
    assert counts(sqs_client, trash) == (3, 0)

    no_answer = run("purge", "trash", stdin="")
    assert no_answer.code == 1
    assert counts(sqs_client, trash) == (3, 0)

    confirmed = run("purge", "trash", stdin="y\n")
    assert confirmed.code == 0, confirmed.err
    assert "Purged queue 'trash': 3 message(s) were there" in confirmed.out
    assert wait_until(lambda: counts(sqs_client, trash) == (0, 0))

    forced = run("purge", "junk", "--yes")
    assert forced.code == 0, forced.err
    assert "Purged queue 'junk': 2 message(s) were there" in forced.out
    assert forced.err == ""  # no prompt
    again = run("purge", "junk", "--yes")
    assert again.code == 1
    assert "purged less than 60 seconds ago" in again.err
    assert wait_until(lambda: counts(sqs_client, queue_url(sqs_client, prefix, "junk")) == (0, 0))


def test_purge_includes_priority_bands(
    run: Run, endpoint: LocalEndpoint, sqs_client: Any, prefix: str
) -> None:
    urgent = direct_queue("urgent", max_priority=9)
    with connect(endpoint, prefix) as conn:
        publish(conn, urgent, ["low"], priority=0)
        publish(conn, urgent, ["high", "higher"], priority=7)
    base, band = queue_url(sqs_client, prefix, "urgent"), queue_url(sqs_client, prefix, "urgent-p6")
    assert (counts(sqs_client, base), counts(sqs_client, band)) == ((1, 0), (2, 0))

    peeked = run("peek", "urgent")
    assert len(peeked.out.splitlines()) == 2  # the header and the one message of band 0
    assert "priority band queues (urgent-p9, urgent-p6, urgent-p3)" in peeked.err

    purged = run("purge", "urgent", "--yes")
    assert purged.code == 0, purged.err
    assert "and its priority band queues (urgent-p9, urgent-p6, urgent-p3)" in purged.out
    assert "3 message(s) were there" in purged.out
    assert wait_until(lambda: counts(sqs_client, base) == counts(sqs_client, band) == (0, 0))


# -- sqsbus move / redrive -----------------------------------------------------------------


def test_move_moves_each_message_once_with_its_attributes(
    run: Run, endpoint: LocalEndpoint, sqs_client: Any, prefix: str
) -> None:
    attributes = {"tenant": {"DataType": "String", "StringValue": "acme"}}
    with connect(endpoint, prefix) as conn:
        publish(conn, direct_queue("from"), [{"n": n} for n in range(12)])
        publish(conn, direct_queue("from"), [{"n": 12}], message_attributes=attributes)
    sqs_client.create_queue(QueueName=prefix + "to")
    source = queue_url(sqs_client, prefix, "from")
    destination = queue_url(sqs_client, prefix, "to")
    sqs_client.send_message(
        QueueUrl=source,
        MessageBody="foreign",
        MessageAttributes={
            "blob": {"DataType": "Binary", "BinaryValue": b"\x00\xff"},
            "count": {"DataType": "Number", "StringValue": "7"},
        },
    )
    before = content(receive_all(sqs_client, source, release=True))
    assert sum(before.values()) == 14

    partial = run("move", "from", "to", "--limit", "5")
    assert partial.code == 0, partial.err
    assert "Moved 5 message(s) from 'from' to 'to'; 0 failed." in partial.out
    assert partial.err == ""  # no progress bar when stderr is not a terminal
    assert counts(sqs_client, source) == (9, 0)

    rest = run("move", "from", "to", "--progress")
    assert rest.code == 0, rest.err
    assert "Moved 9 message(s)" in rest.out
    assert "from -> to" in rest.err  # forced progress bar

    assert counts(sqs_client, source) == (0, 0)
    assert content(receive_all(sqs_client, destination)) == before


def test_move_between_fifo_queues_keeps_groups_and_order(
    run: Run, sqs_client: Any, prefix: str
) -> None:
    fifo = {"FifoQueue": "true"}
    source = sqs_client.create_queue(QueueName=f"{prefix}in.fifo", Attributes=fifo)["QueueUrl"]
    destination = sqs_client.create_queue(QueueName=f"{prefix}out.fifo", Attributes=fifo)
    for number in range(4):
        sqs_client.send_message(
            QueueUrl=source,
            MessageBody=f"step {number}",
            MessageGroupId="order-1" if number < 3 else "order-2",
            MessageDeduplicationId=f"dedup-{number}",
        )

    moved = run("move", "in.fifo", "out.fifo")
    assert moved.code == 0, moved.err
    assert "Moved 4 message(s)" in moved.out
    received = receive_all(sqs_client, destination["QueueUrl"])
    groups = [(m["Attributes"]["MessageGroupId"], m["Body"]) for m in received]
    assert [body for group, body in groups if group == "order-1"] == ["step 0", "step 1", "step 2"]
    assert ("order-2", "step 3") in groups
    assert counts(sqs_client, source) == (0, 0)

    # Identical bodies stay distinct messages, even with content-based deduplication.
    standard = sqs_client.create_queue(QueueName=f"{prefix}plain")["QueueUrl"]
    by_content = sqs_client.create_queue(
        QueueName=f"{prefix}dedup.fifo",
        Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"},
    )["QueueUrl"]
    for _ in range(3):
        sqs_client.send_message(QueueUrl=standard, MessageBody="same body")
    moved = run("move", "plain", "dedup.fifo")
    assert moved.code == 0, moved.err
    received = receive_all(sqs_client, by_content)
    assert [(m["Body"], m["Attributes"]["MessageGroupId"]) for m in received] == [
        ("same body", "default")
    ] * 3


def test_move_leaves_what_the_destination_refuses_and_moves_the_rest(
    run: Run, sqs_client: Any, prefix: str
) -> None:
    source = sqs_client.create_queue(QueueName=f"{prefix}wide")["QueueUrl"]
    sqs_client.create_queue(QueueName=f"{prefix}narrow", Attributes={"MaximumMessageSize": "1024"})
    for body in ("small 1", "x" * 2000, "small 2"):
        sqs_client.send_message(QueueUrl=source, MessageBody=body)

    moved = run("move", "wide", "narrow")
    assert moved.code == 1
    assert "Moved 2 message(s) from 'wide' to 'narrow'; 1 failed." in moved.out
    assert "over the 1024-byte limit of queue" in moved.err
    assert [m["Body"] for m in receive_all(sqs_client, source)] == ["x" * 2000]
    narrow = queue_url(sqs_client, prefix, "narrow")
    assert sorted(m["Body"] for m in receive_all(sqs_client, narrow)) == ["small 1", "small 2"]


def test_redrive_returns_dead_letters_to_their_source(
    run: Run, celery_app: Celery, sqs_client: Any, prefix: str
) -> None:
    source, dlq = create_with_dead_letters(sqs_client, prefix, "tasks", 1)
    for number in range(4):
        celery_app.send_task("proj.tasks.fail", args=(number,), queue="tasks")
    assert len(receive_all(sqs_client, source, release=True)) == 4  # the one delivery each
    receive_all(sqs_client, source)  # SQS moves them to the dead-letter queue instead
    assert wait_until(lambda: counts(sqs_client, dlq) == (4, 0))
    dead = content(receive_all(sqs_client, dlq, release=True))

    redriven = run("redrive", "tasks-dlq")
    assert redriven.code == 0, redriven.err
    assert "Moved 4 message(s) from 'tasks-dlq' to 'tasks'; 0 failed." in redriven.out
    assert "moving client-side" in redriven.err  # moto has no StartMessageMoveTask
    assert counts(sqs_client, dlq) == (0, 0)
    back = receive_all(sqs_client, source, release=True)
    assert content(back) == dead
    assert {m["Attributes"]["ApproximateReceiveCount"] for m in back} == {"1"}

    tasks = [summarize(m["Body"]) for m in back]
    assert sorted((t.task, t.args) for t in tasks) == [("proj.tasks.fail", [n]) for n in range(4)]


def reject_all(conn: Any, queue: Any, count: int) -> None:
    """Take ``count`` messages of ``queue`` and reject them without requeue."""
    bound = queue(conn.default_channel)
    rejected: list[Any] = []

    def reject_next() -> bool:
        message = bound.get()
        if message is not None:
            message.reject(requeue=False)
            rejected.append(message)
        return len(rejected) >= count

    assert wait_until(reject_next, timeout=20)
    conn.transport.acker.flush()


def test_redrive_sends_each_dead_letter_back_to_the_queue_it_names(
    run: Run, endpoint: LocalEndpoint, sqs_client: Any, prefix: str
) -> None:
    redrive_policy = {"dead_letter_queue": "dead", "max_receive_count": 3}
    alpha, beta = direct_queue("alpha"), direct_queue("beta")
    with connect(endpoint, prefix, redrive_policy=redrive_policy) as conn:
        publish(conn, alpha, ["a1", "a2"])
        publish(conn, beta, ["b1"])
        reject_all(conn, alpha, 2)  # sqsbus moves them to "dead", naming their source
        reject_all(conn, beta, 1)
    dead = queue_url(sqs_client, prefix, "dead")
    assert wait_until(lambda: counts(sqs_client, dead) == (3, 0))
    sqs_client.send_message(QueueUrl=dead, MessageBody="from nowhere")

    peeked = run("peek", "dead")
    assert peeked.code == 0, peeked.err
    assert peeked.out.splitlines()[0].endswith("DEAD-LETTER REASON")
    assert sum("rejected without requeue" in line for line in peeked.out.splitlines()) == 3

    redriven = run("redrive", "dead")
    assert redriven.code == 1  # one message could not be placed
    assert "Moved 3 message(s) from 'dead' to 'alpha' (2), 'beta' (1); 1 failed." in redriven.out
    assert "does not say which of alpha, beta it came from" in redriven.err
    assert [m["Body"] for m in receive_all(sqs_client, dead)] == ["from nowhere"]
    for name, count in (("alpha", 2), ("beta", 1)):
        back = receive_all(sqs_client, queue_url(sqs_client, prefix, name))
        assert len(back) == count
        sources = {m["MessageAttributes"]["sqsbus.dead-letter-source"]["StringValue"] for m in back}
        assert sources == {prefix + name}


def test_redrive_needs_a_destination_when_nothing_dead_letters_there(
    run: Run, sqs_client: Any, prefix: str
) -> None:
    sqs_client.create_queue(QueueName=prefix + "orphans")
    sqs_client.create_queue(QueueName=prefix + "target")
    refused = run("redrive", "orphans")
    assert refused.code == 1
    assert "--to" in refused.err
    moved = run("redrive", "orphans", "--to", "target", "--client-side")
    assert moved.code == 0, moved.err
    assert "Moved 0 message(s)" in moved.out


def test_unknown_queue_names_close_matches(run: Run, sqs_client: Any, prefix: str) -> None:
    sqs_client.create_queue(QueueName=prefix + "invoices")
    for command in (["peek", "invoice"], ["purge", "invoice", "--yes"], ["move", "invoice", "x"]):
        outcome = run(*command)
        assert outcome.code == 1
        assert "no queue 'invoice'" in outcome.err
        assert "did you mean invoices?" in outcome.err
        assert "Traceback" not in outcome.err


# -- as a program --------------------------------------------------------------------------


def sqsbus(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sqsbus", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )


def test_program_lists_queues_of_the_recorded_local_endpoint(
    endpoint: LocalEndpoint, sqs_client: Any, prefix: str, tmp_path: Any
) -> None:
    url = sqs_client.create_queue(QueueName=prefix + "visible")["QueueUrl"]
    sqs_client.send_message(QueueUrl=url, MessageBody="hello")
    state = {"SQSBUS_STATE_DIR": str(tmp_path)}
    write_record(endpoint.url, endpoint.broker_url(), state)  # as a running `sqsbus local` does

    result = sqsbus("queues", "--json", "-o", f"queue_name_prefix={prefix}", env=state)
    assert result.returncode == 0, result.stderr
    assert [(q["name"], q["visible"]) for q in json.loads(result.stdout)] == [("visible", 1)]


def test_program_errors_are_one_line_without_secrets(tmp_path: Any) -> None:
    secret = "s3cr3t/Value+1"
    closed_port = "1"
    unreachable = sqsbus(
        "queues",
        "--broker",
        f"sqsbus://AKIDEXAMPLE:{secret.replace('/', '%2F')}@127.0.0.1:{closed_port}",
    )
    assert unreachable.returncode == 1
    assert "cannot reach the endpoint" in unreachable.stderr
    assert "Traceback" not in unreachable.stderr
    assert "s3cr3t" not in unreachable.stderr + unreachable.stdout

    bad_option = sqsbus(
        "peek", "q", "-o", "queue_name_prfix=x", "--broker", "sqsbus://k:v@127.0.0.1:1"
    )
    assert bad_option.returncode == 1
    assert "did you mean 'queue_name_prefix'" in bad_option.stderr

    no_credentials = sqsbus(
        "queues",
        env={
            "AWS_ACCESS_KEY_ID": "",
            "AWS_SECRET_ACCESS_KEY": "",
            "SQSBUS_STATE_DIR": str(tmp_path),
        },
    )
    assert no_credentials.returncode == 1
    assert "no AWS credentials found" in no_credentials.stderr
    assert "Traceback" not in no_credentials.stderr
