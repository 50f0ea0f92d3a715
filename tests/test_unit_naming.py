"""Unit tests of queue naming (``sqsbus.queues``): Kombu's translation, SQS limits,
and predefined queue consistency.  Pure: no endpoint, no network."""

from __future__ import annotations

import string

import pytest

from sqsbus.config import Options, PredefinedQueue, parse_options
from sqsbus.errors import ConfigurationError, InvalidQueueError
from sqsbus.limits import MAX_QUEUE_NAME_LENGTH
from sqsbus.queues import (
    canonical_name,
    entity_name,
    name_from_url,
    validate_predefined,
)

ACCOUNT_URL = "https://sqs.us-east-1.amazonaws.com/123456789012"


# -- entity_name: Kombu's rule --------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("celery", "celery"),
        ("my.queue", "my-queue"),
        ("a.b.c", "a-b-c"),
        ("keep-dash_and_underscore", "keep-dash_and_underscore"),
        ("celery@worker1.example.com.celery.pidbox", "celery_worker1-example-com-celery-pidbox"),
        ("x:y/z@w!#", "x_y_z_w__"),
        ("a+b=c", "a_b_c"),
        ("q(1)[2]{3}", "q_1__2__3_"),
        ("tasks.fifo", "tasks.fifo"),
        ("my.tasks.fifo", "my-tasks.fifo"),
        ("a:b.fifo", "a_b.fifo"),
        ("q.fifo.fifo", "q-fifo.fifo"),
        ("fifo", "fifo"),
        ("queue.FIFO", "queue-FIFO"),
    ],
)
def test_entity_name_follows_kombu(name: str, expected: str) -> None:
    assert entity_name(name) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("my queue", "my_queue"),
        ("tab\there", "tab_here"),
        ("café", "caf_"),
        ("日本", "__"),
        ("naïve.fifo", "na_ve.fifo"),
    ],
)
def test_entity_name_replaces_characters_sqs_refuses(name: str, expected: str) -> None:
    assert entity_name(name) == expected


@pytest.mark.parametrize("name", ["celery", "a.b", "x:y/z@w!#", "q.fifo", "a.b.fifo", "é x"])
def test_entity_name_output_is_a_legal_sqs_name(name: str) -> None:
    result = entity_name(name)
    stem = result.removesuffix(".fifo")
    assert all(c.isascii() and (c.isalnum() or c in "-_") for c in stem)


def test_entity_name_agrees_with_kombus_transport_on_ascii_names() -> None:
    """Kombu and sqsbus must map a Kombu queue name to the same SQS queue."""
    kombu_sqs = pytest.importorskip("kombu.transport.SQS")
    names = [
        "celery",
        "a.b.c",
        "celery@host.example.com.celery.pidbox",
        "x:y/z@w!#$%&'*+,;<=>?^`|~",
        "tasks.fifo",
        "my.tasks.fifo",
        "a:b.fifo",
        "q.fifo.fifo",
        "dev-" + string.punctuation,
        string.punctuation + ".fifo",
    ]
    for name in names:
        assert entity_name(name) == kombu_sqs.Channel.entity_name(None, name), name


def test_entity_name_is_idempotent() -> None:
    for name in ["a.b", "x:y", "q.fifo", "my queue", "café.fifo"]:
        once = entity_name(name)
        assert entity_name(once) == once


# -- canonical_name: prefix and limits -----------------------------------------


def test_canonical_name_applies_prefix_before_translating() -> None:
    assert canonical_name("orders", "dev-") == "dev-orders"
    assert canonical_name("orders", "dev.") == "dev-orders"
    assert canonical_name("orders.fifo", "prod:") == "prod_orders.fifo"


def test_canonical_name_without_prefix() -> None:
    assert canonical_name("celery") == "celery"


def test_exactly_80_characters_is_accepted() -> None:
    name = "a" * MAX_QUEUE_NAME_LENGTH
    assert MAX_QUEUE_NAME_LENGTH == 80
    assert canonical_name(name) == name


def test_81_characters_is_rejected_naming_the_limit() -> None:
    with pytest.raises(ConfigurationError) as caught:
        canonical_name("a" * 81)
    message = str(caught.value)
    assert "80" in message
    assert "81" in message


def test_fifo_suffix_counts_towards_the_limit() -> None:
    ok = "a" * 75 + ".fifo"
    assert canonical_name(ok) == ok
    with pytest.raises(ConfigurationError, match="80"):
        canonical_name("a" * 76 + ".fifo")


def test_prefix_counts_towards_the_limit() -> None:
    assert canonical_name("a" * 76, "dev-") == "dev-" + "a" * 76
    with pytest.raises(ConfigurationError, match="80"):
        canonical_name("a" * 77, "dev-")


@pytest.mark.parametrize("name", ["", ".fifo"])
def test_empty_name_is_rejected(name: str) -> None:
    with pytest.raises(ConfigurationError, match="empty"):
        canonical_name(name)


def test_name_from_url() -> None:
    assert name_from_url(f"{ACCOUNT_URL}/orders") == "orders"
    assert name_from_url(f"{ACCOUNT_URL}/orders.fifo/") == "orders.fifo"


# -- validate_predefined -------------------------------------------------------


def options_with(*queues: PredefinedQueue) -> Options:
    return Options(predefined_queues={queue.name: queue for queue in queues})


def test_matching_predefined_queues_are_accepted() -> None:
    validate_predefined(
        options_with(
            PredefinedQueue("orders", f"{ACCOUNT_URL}/orders"),
            PredefinedQueue("payments.fifo", f"{ACCOUNT_URL}/payments.fifo"),
            PredefinedQueue("trailing.fifo", f"{ACCOUNT_URL}/trailing.fifo/"),
        )
    )


def test_fifo_name_with_standard_url_is_rejected() -> None:
    options = options_with(PredefinedQueue("orders.fifo", f"{ACCOUNT_URL}/orders"))
    with pytest.raises(InvalidQueueError) as caught:
        validate_predefined(options)
    assert "'orders.fifo'" in str(caught.value)


def test_standard_name_with_fifo_url_is_rejected() -> None:
    options = options_with(PredefinedQueue("orders", f"{ACCOUNT_URL}/orders.fifo"))
    with pytest.raises(InvalidQueueError) as caught:
        validate_predefined(options)
    assert "'orders'" in str(caught.value)
    assert ".fifo" in str(caught.value)


def test_validate_predefined_via_parse_options() -> None:
    options = parse_options(
        {"predefined_queues": {"orders.fifo": {"url": f"{ACCOUNT_URL}/orders"}}}
    )
    with pytest.raises(InvalidQueueError):
        validate_predefined(options)


def test_no_predefined_queues_is_valid() -> None:
    validate_predefined(Options())
