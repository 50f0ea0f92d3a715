"""Topic matching and the binding records that every process reads (pure logic)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sqsbus.routing.bindings import (
    BINDING_TAG,
    binding_tag,
    condition_admits,
    recorded_patterns,
    topic_matches,
)
from sqsbus.routing.exchanges import topic_filter


@pytest.mark.parametrize(
    ("pattern", "key", "matches"),
    [
        ("order.created", "order.created", True),
        ("order.created", "order.created.late", False),
        ("order.*", "order.created", True),
        ("order.*", "order", False),
        ("order.*", "order.created.late", False),
        ("order.#", "order", True),
        ("order.#", "order.created.late", True),
        ("#", "", True),
        ("#", "anything.at.all", True),
        ("*.created", "user.created", True),
        ("*.created", "created", False),
        ("order.*.paid", "order.7.paid", True),
        ("order.*.paid", "order.paid", False),
        ("order.#.paid", "order.paid", True),
        ("order.#.paid", "order.a.b.paid", True),
        ("#.paid.#", "x.paid", True),
        ("a.#.#.b", "a.b", True),
        ("", "", True),
        ("", "x", False),
    ],
)
def test_topic_matches_like_amqp(pattern: str, key: str, matches: bool) -> None:
    assert topic_matches(pattern, key) is matches


words = st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=4).map(".".join)
patterns = st.lists(st.sampled_from(["a", "b", "*", "#"]), min_size=1, max_size=4).map(".".join)


@given(patterns, words)
def test_the_sns_filter_of_a_pattern_admits_every_key_the_pattern_matches(
    pattern: str, key: str
) -> None:
    condition = topic_filter(pattern)
    if topic_matches(pattern, key):
        assert condition is None or condition_admits(condition, key)


def test_binding_records_round_trip_and_stay_within_sqs_tag_limits() -> None:
    tag = binding_tag("events", "order.*.paid")
    assert tag is not None
    key, value = tag
    assert key.startswith(BINDING_TAG) and len(key) <= 128 and len(value) <= 256
    other = binding_tag("other", "x.#")
    assert other is not None
    tags = {key: value, other[0]: other[1], "sqsbus:alive": "1", BINDING_TAG + "junk": "%%"}
    assert recorded_patterns(tags, "events") == {"order.*.paid"}
    assert binding_tag("events", "x" * 300) is None


@pytest.mark.parametrize(
    ("condition", "key", "admits"),
    [
        ("order.created", "order.created", True),
        ("order.created", "order.created.x", False),
        ({"prefix": "order"}, "order.refunded", True),
        ({"prefix": "order"}, "user.created", False),
        ({"exists": False}, "", True),
        ({"exists": False}, "x", False),
    ],
)
def test_condition_admits_like_sns(condition: object, key: str, admits: bool) -> None:
    assert condition_admits(condition, key) is admits  # type: ignore[arg-type]
