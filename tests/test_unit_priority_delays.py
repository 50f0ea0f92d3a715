"""Unit tests of pure logic: priority bands, the priority-aware Inbox, delays, new options."""

from __future__ import annotations

import pytest

from sqsbus.config import parse_options
from sqsbus.engine import delays
from sqsbus.engine.messages import Received
from sqsbus.engine.receiver import BandGate, Inbox, Waker
from sqsbus.errors import ConfigurationError
from sqsbus.kombu.queue_arguments import QueueArguments
from sqsbus.queues import QueueRef, band_of, band_queue, priority_bands

STEPS = (0, 3, 6, 9)


def message(number: int, priority: int = 0, attributes: dict | None = None) -> Received:
    return Received(
        queue=QueueRef("q", "https://sqs.example/123/q", None),
        name="q",
        message_id=f"m{number}",
        receipt_handle=f"rh{number}",
        body="{}",
        message_attributes=attributes or {},
        priority=priority,
    )


@pytest.mark.parametrize(
    ("priority", "max_priority", "band"),
    [
        (0, 9, 0),
        (2, 9, 0),
        (3, 9, 3),
        (5, 9, 3),
        (9, 9, 9),
        (200, 9, 9),
        (9, 5, 3),
        (None, 9, 0),
        ("7", 9, 6),
        ("high", 9, 0),
        (-4, 9, 0),
    ],
)
def test_band_of_a_priority(priority: object, max_priority: int, band: int) -> None:
    assert band_of(priority, max_priority, STEPS) == band


def test_bands_and_their_queue_names() -> None:
    assert priority_bands(9, STEPS) == [0, 3, 6, 9]
    assert priority_bands(4, STEPS) == [0, 3]
    assert priority_bands(10, (5, 10)) == [0, 5, 10]
    assert band_queue("celery", 0) == "celery"
    assert band_queue("celery", 6) == "celery.p6"
    assert band_queue("jobs.fifo", 3) == "jobs.p3.fifo"


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        ({"x-max-priority": 0}, "from 1 to 255"),
        ({"x-max-priority": "9"}, "from 1 to 255"),
        ({"x-message-ttl": -1}, "milliseconds >= 0"),
        ({"x-expires": "soon"}, "milliseconds >= 0"),
    ],
)
def test_bad_queue_arguments_are_named(arguments: dict, problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem):
        QueueArguments.parse("q", arguments)


def test_queue_arguments_parse() -> None:
    parsed = QueueArguments.parse("q", {"x-max-priority": 9, "x-message-ttl": 1500.0})
    assert parsed == QueueArguments(message_ttl_ms=1500, max_priority=9)


def test_inbox_hands_out_the_highest_band_first_fifo_within_a_band() -> None:
    waker = Waker()
    try:
        inbox = Inbox(waker, lambda: None)
        inbox.put([message(1), message(2, 3), message(3), message(4, 9), message(5, 3)])
        assert [m.message_id for m in inbox.take(None)] == ["m4", "m2", "m5", "m1", "m3"]
        inbox.put([message(6), message(7)])
        assert [m.message_id for m in inbox.take(1)] == ["m6"]  # plain FIFO without bands
        inbox.put([message(8, 6)])
        assert inbox.take_named("q") is not None and len(inbox) == 1
        assert [m.message_id for m in inbox.remove("q")] == ["m7"]
    finally:
        waker.close()


def test_band_gate_holds_lower_bands_while_a_higher_one_is_busy() -> None:
    gate = BandGate([0, 3, 9])
    assert gate.higher_busy(0) and gate.higher_busy(3) and not gate.higher_busy(9)
    gate.report(9, False)
    gate.report(3, False)
    assert not gate.higher_busy(0)
    gate.report(9, True)
    assert gate.higher_busy(0) and gate.higher_busy(3)


def test_delay_for_never_passes_the_eta_and_caps_at_sqs_limit() -> None:
    assert delays.delay_for(100.0, now=90.5) == 9
    assert delays.delay_for(100.0, now=100.5) == 0
    assert delays.delay_for(10_000.0, now=0.0) == delays.MAX_DELAY_SECONDS


def test_surfacing_early_is_measured_from_the_eta_attribute() -> None:
    early = message(1, attributes={delays.ETA_ATTRIBUTE: delays.eta_attribute(1000.0)})
    assert delays.surfaced_early(early, now=900.0) == pytest.approx(100.0)
    assert delays.surfaced_early(early, now=999.5) is None  # within the slack: deliver
    assert delays.surfaced_early(message(2), now=0.0) is None
    garbled = message(3, attributes={delays.ETA_ATTRIBUTE: {"StringValue": "nan"}})
    assert delays.eta_of(garbled) is None


def test_resendable_attributes_keep_only_what_sendmessage_takes() -> None:
    received = message(
        1,
        attributes={
            "a": {"DataType": "String", "StringValue": "x", "StringListValues": []},
            "b": "not a dict",
        },
    )
    assert delays.resendable_attributes(received) == {
        "a": {"DataType": "String", "StringValue": "x"}
    }


def test_new_options_are_validated() -> None:
    options = parse_options(
        {"lease_seconds": 30, "native_delays": "false", "priority_steps": [9, 0, 5]}
    )
    assert (options.lease_seconds, options.native_delays) == (30, False)
    assert options.priority_steps == (0, 5, 9)
    for bad in ({"lease_seconds": -1}, {"priority_steps": []}, {"priority_steps": [1, 1]}):
        with pytest.raises(ConfigurationError):
            parse_options(bad)
