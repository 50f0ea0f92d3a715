"""Property-based tests (hypothesis): naming, wire codec, batch splitting, priority bands."""

from __future__ import annotations

import json
import re
import string
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sqsbus import codec
from sqsbus.engine.group_commit import _Lane, _Pending
from sqsbus.errors import ConfigurationError
from sqsbus.limits import MAX_BATCH_BYTES, MAX_BATCH_ENTRIES, MAX_QUEUE_NAME_LENGTH
from sqsbus.queues import (
    QueueRef,
    band_of,
    canonical_name,
    entity_name,
    priority_bands,
)

LEGAL_SQS_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$|^[A-Za-z0-9_-]{1,75}\.fifo$")

settings.register_profile("sqsbus", max_examples=200, deadline=None)
settings.load_profile("sqsbus")


# -- naming -------------------------------------------------------------------------------


@given(st.text(max_size=100), st.text(max_size=20))
def test_canonical_name_is_legal_or_refused_clearly(name: str, prefix: str) -> None:
    try:
        result = canonical_name(name, prefix)
    except ConfigurationError as exc:
        assert "empty" in str(exc) or str(MAX_QUEUE_NAME_LENGTH) in str(exc)
        return
    assert LEGAL_SQS_NAME.match(result), result
    assert entity_name(result) == result  # stable: translating again changes nothing
    assert result.endswith(".fifo") == (prefix + name).endswith(".fifo")


@given(st.text(alphabet=string.printable, max_size=60))
def test_entity_name_agrees_with_kombus_own_transport(name: str) -> None:
    kombu_sqs = pytest.importorskip("kombu.transport.SQS")
    if any(c in name for c in string.whitespace):
        return  # Kombu passes whitespace through (SQS refuses it); sqsbus replaces it
    assert entity_name(name) == kombu_sqs.Channel.entity_name(None, name)


# -- codec --------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
envelopes = st.fixed_dictionaries(
    {
        "body": st.text(),
        "headers": st.dictionaries(st.text(max_size=10), json_values, max_size=4),
        "properties": st.fixed_dictionaries(
            {"delivery_tag": st.text(max_size=20)},
            optional={"priority": st.integers(0, 255), "body_encoding": st.just("base64")},
        ),
    },
    optional={"content-type": st.just("application/json"), "content-encoding": st.just("utf-8")},
)


@given(envelopes, st.booleans())
def test_codec_round_trips_every_envelope(envelope: dict[str, Any], use_base64: bool) -> None:
    wire = codec.encode_body(envelope, base64_encoding=use_base64)
    decoded = codec.decode_body(wire)
    assert decoded.kind == codec.KOMBU
    assert decoded.envelope == json.loads(json.dumps(envelope))


@given(st.text())
def test_decoding_never_raises_on_any_text(raw: str) -> None:
    decoded = codec.decode_body(raw)
    assert decoded.kind in {codec.KOMBU, codec.FOREIGN_JSON, codec.FOREIGN_TEXT}
    envelope = codec.foreign_envelope(decoded, {}) if decoded.envelope is None else None
    assert envelope is None or "body" in envelope


# -- batch splitting ----------------------------------------------------------------------

QUEUE = QueueRef("q", "https://sqs.example/1/q", None)


def pending(size: int, number: int) -> _Pending:
    return _Pending(params={"MessageBody": str(number)}, size=size)


@given(st.lists(st.integers(1, 262_144), min_size=1, max_size=40), st.booleans())
def test_batches_respect_sqs_limits_and_fifo_order(sizes: list[int], fifo: bool) -> None:
    lane = _Lane(fifo=fifo, queue=QUEUE)
    lane.pending.extend(pending(size, n) for n, size in enumerate(sizes))
    sent: list[int] = []
    while lane.pending:
        batch = lane.take(now=float("inf"))
        assert 1 <= len(batch) <= MAX_BATCH_ENTRIES
        assert sum(entry.size for entry in batch) <= MAX_BATCH_BYTES
        sent += [int(entry.params["MessageBody"]) for entry in batch]
    # Everything, once; FIFO in order (a standard queue may pack a later, smaller message
    # into a batch that an earlier one no longer fits: SQS does not order them anyway).
    assert sorted(sent) == list(range(len(sizes)))
    if fifo:
        assert sent == list(range(len(sizes)))


# -- priority bands -----------------------------------------------------------------------


@given(
    st.integers(-10, 300),
    st.integers(1, 255),
    st.lists(st.integers(0, 255), min_size=1, max_size=6, unique=True),
)
def test_band_of_is_monotonic_and_a_declared_band(
    priority: int, max_priority: int, steps: list[int]
) -> None:
    band = band_of(priority, max_priority, steps)
    assert band in priority_bands(max_priority, steps)
    assert band <= max(0, min(priority, max_priority))
    assert band_of(priority + 1, max_priority, steps) >= band
