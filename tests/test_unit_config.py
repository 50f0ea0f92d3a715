"""Unit tests of ``sqsbus.config.parse_options``: Kombu option names, defaults, validation.

Pure and fast: no endpoint, no network.  Each test states what a user configuring
``broker_transport_options`` (or a broker URL) would see.
"""

from __future__ import annotations

from typing import Any

import pytest

from sqsbus.config import (
    DEFAULT_REGION,
    KNOWN_OPTIONS,
    Options,
    PredefinedQueue,
    Secret,
    parse_options,
)
from sqsbus.errors import ConfigurationError
from sqsbus.limits import MAX_VISIBILITY_TIMEOUT, STS_MIN_SESSION_SECONDS

QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/orders"
FIFO_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/orders.fifo"


def config_error(options: dict[str, Any] | None = None, **kwargs: Any) -> str:
    """The message of the ConfigurationError that ``parse_options`` raises."""
    with pytest.raises(ConfigurationError) as caught:
        parse_options(options, **kwargs)
    return str(caught.value)


# -- defaults -----------------------------------------------------------------


def test_defaults_match_kombu() -> None:
    options = parse_options()
    assert options.region == "us-east-1" == DEFAULT_REGION
    assert options.wait_time_seconds == 10
    assert options.visibility_timeout == 1800
    assert options.polling_interval == 1.0
    assert options.queue_name_prefix == ""
    assert options.base64_encoding is True
    assert options.sts_token_timeout == 900 == STS_MIN_SESSION_SECONDS
    assert options.sts_token_buffer_time == 0
    assert options.endpoint_url is None
    assert options.is_secure is True
    assert options.predefined_queues == {}
    assert options.access_key_id is None
    assert options.secret_access_key is None


def test_empty_and_none_options_are_the_defaults() -> None:
    assert parse_options(None) == parse_options({}) == Options()


def test_none_value_means_default() -> None:
    options = parse_options({"wait_time_seconds": None, "visibility_timeout": None})
    assert options.wait_time_seconds == 10
    assert options.visibility_timeout == 1800


def test_every_kombu_sqs_option_name_is_accepted() -> None:
    kombu_names = {
        "region",
        "regioninfo",
        "is_secure",
        "port",
        "endpoint_url",
        "predefined_queues",
        "predefined_exchanges",
        "queue_name_prefix",
        "supports_fanout",
        "visibility_timeout",
        "wait_time_seconds",
        "polling_interval",
        "sts_role_arn",
        "sts_token_timeout",
        "sts_token_buffer_time",
        "client-config",
        "sqs-creation-attributes",
        "queue_tags",
        "sqs_base64_encoding",
        "fetch_message_attributes",
        "max_retries",
        "interval_start",
        "interval_step",
        "interval_max",
    }
    assert kombu_names <= KNOWN_OPTIONS


def test_connection_retry_options_read_by_kombu_are_accepted_and_ignored() -> None:
    options = parse_options({"max_retries": 3, "interval_start": 0, "interval_max": 5})
    assert options == Options()


# -- region -------------------------------------------------------------------


def test_region_option_is_used() -> None:
    assert parse_options({"region": "eu-west-1"}).region == "eu-west-1"


def test_region_option_wins_over_default_region() -> None:
    options = parse_options({"region": "ap-south-1"}, default_region="eu-west-1")
    assert options.region == "ap-south-1"


@pytest.mark.parametrize("raw", [{}, {"region": None}, {"region": ""}])
def test_missing_region_falls_back_to_default_region(raw: dict[str, Any]) -> None:
    assert parse_options(raw, default_region="eu-central-1").region == "eu-central-1"


@pytest.mark.parametrize("raw", [{}, {"region": None}, {"region": ""}])
def test_missing_region_without_default_region_is_us_east_1(raw: dict[str, Any]) -> None:
    assert parse_options(raw).region == "us-east-1"
    assert parse_options(raw, default_region=None).region == "us-east-1"


def test_region_must_be_a_string() -> None:
    assert "'region'" in config_error({"region": 42})


# -- wait_time_seconds --------------------------------------------------------


@pytest.mark.parametrize(("raw", "expected"), [(0, 0), (1, 1), (20, 20), ("15", 15), (5.0, 5)])
def test_wait_time_seconds_accepts_0_to_20(raw: Any, expected: int) -> None:
    assert parse_options({"wait_time_seconds": raw}).wait_time_seconds == expected


@pytest.mark.parametrize("raw", [21, -1, "abc", True, False, 2.5, [], "20.5"])
def test_wait_time_seconds_rejects_bad_values(raw: Any) -> None:
    message = config_error({"wait_time_seconds": raw})
    assert "'wait_time_seconds'" in message
    assert "0 to 20" in message


# -- visibility_timeout -------------------------------------------------------


@pytest.mark.parametrize("raw", [0, 30, 43_200, "600"])
def test_visibility_timeout_accepts_0_to_12_hours(raw: Any) -> None:
    assert parse_options({"visibility_timeout": raw}).visibility_timeout == int(raw)


@pytest.mark.parametrize("raw", [-1, 43_201, "half an hour", True, 1.5])
def test_visibility_timeout_rejects_out_of_range(raw: Any) -> None:
    message = config_error({"visibility_timeout": raw})
    assert "'visibility_timeout'" in message
    assert str(MAX_VISIBILITY_TIMEOUT) in message


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("wait_time_seconds", float("inf")),
        ("wait_time_seconds", "inf"),
        ("visibility_timeout", float("nan")),
        ("visibility_timeout", "nan"),
        ("sts_token_timeout", "inf"),
    ],
)
def test_non_finite_integer_options_raise_configuration_error(name: str, raw: Any) -> None:
    # BUG: int(float('inf')) raises OverflowError and int(float('nan')) ValueError
    # inside _int_range, so the user gets a bare Python error not naming the option.
    message = config_error({name: raw})
    assert repr(name) in message


# -- polling_interval ---------------------------------------------------------


@pytest.mark.parametrize(("raw", "expected"), [(0, 0.0), (0.25, 0.25), ("2", 2.0), (5, 5.0)])
def test_polling_interval_accepts_non_negative_seconds(raw: Any, expected: float) -> None:
    assert parse_options({"polling_interval": raw}).polling_interval == expected


@pytest.mark.parametrize("raw", [-0.1, "soon", True, []])
def test_polling_interval_rejects_bad_values(raw: Any) -> None:
    assert "'polling_interval'" in config_error({"polling_interval": raw})


def test_polling_interval_rejects_nan() -> None:
    # BUG: float('nan') < 0 is False, so NaN passes _non_negative_number.
    assert "'polling_interval'" in config_error({"polling_interval": "nan"})


# -- queue_name_prefix --------------------------------------------------------


def test_queue_name_prefix_is_kept() -> None:
    assert parse_options({"queue_name_prefix": "dev-"}).queue_name_prefix == "dev-"


def test_queue_name_prefix_must_be_a_string() -> None:
    assert "'queue_name_prefix'" in config_error({"queue_name_prefix": 7})


# -- sqs_base64_encoding ------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (True, True),
        (False, False),
        ("true", True),
        ("True", True),
        ("yes", True),
        ("on", True),
        ("1", True),
        ("false", False),
        ("FALSE", False),
        ("no", False),
        ("off", False),
        ("0", False),
        (1, True),
        (0, False),
    ],
)
def test_sqs_base64_encoding_forms(raw: Any, expected: bool) -> None:
    assert parse_options({"sqs_base64_encoding": raw}).base64_encoding is expected


@pytest.mark.parametrize("raw", ["maybe", 2, [], ""])
def test_sqs_base64_encoding_rejects_non_booleans(raw: Any) -> None:
    message = config_error({"sqs_base64_encoding": raw})
    assert "'sqs_base64_encoding'" in message
    assert "true or false" in message


# -- queue_tags ---------------------------------------------------------------


def test_queue_tags_within_sqs_limits_are_kept() -> None:
    tags = {"team": "payments", "cost-centre": "", "k" * 128: "v" * 256, "a b_c.d:/=+-@": "é"}
    assert parse_options({"queue_tags": tags}).queue_tags == tags


@pytest.mark.parametrize(
    ("tags", "problem"),
    [
        ({f"t{i}": "x" for i in range(51)}, "has 51 tags; SQS allows 50 per queue"),
        ({"": "x"}, "keys must be 1 to 128"),
        ({"k" * 129: "x"}, "keys must be 1 to 128"),
        ({"team!": "x"}, "keys must be 1 to 128"),
        ({"line\nbreak": "x"}, "keys must be 1 to 128"),
        ({"aws:owner": "x"}, "reserved"),
        ({"SQSBUS:expires": "1"}, "reserved"),
        ({"team": "v" * 257}, "values must be at most 256"),
        ({"team": "a;b"}, "values must be at most 256"),
    ],
)
def test_queue_tags_beyond_sqs_limits_are_refused_up_front(
    tags: dict[str, str], problem: str
) -> None:
    message = config_error({"queue_tags": tags})
    assert "'queue_tags'" in message and problem in message


# -- STS ----------------------------------------------------------------------


def test_sts_options() -> None:
    options = parse_options(
        {
            "sts_role_arn": "arn:aws:iam::123456789012:role/worker",
            "sts_token_timeout": 3600,
            "sts_token_buffer_time": 300,
        }
    )
    assert options.sts_role_arn == "arn:aws:iam::123456789012:role/worker"
    assert options.sts_token_timeout == 3600
    assert options.sts_token_buffer_time == 300


def test_sts_token_timeout_minimum_is_900() -> None:
    assert parse_options({"sts_token_timeout": 900}).sts_token_timeout == 900
    message = config_error({"sts_token_timeout": 899})
    assert "'sts_token_timeout'" in message
    assert "900" in message


def test_sts_token_timeout_maximum_is_12_hours() -> None:
    assert parse_options({"sts_token_timeout": 43_200}).sts_token_timeout == 43_200
    assert "'sts_token_timeout'" in config_error({"sts_token_timeout": 43_201})


def test_sts_token_buffer_time_must_be_less_than_timeout() -> None:
    assert parse_options({"sts_token_buffer_time": 899}).sts_token_buffer_time == 899
    message = config_error({"sts_token_buffer_time": 900})
    assert "'sts_token_buffer_time'" in message
    assert "'sts_token_timeout'" in message
    message = config_error({"sts_token_timeout": 1000, "sts_token_buffer_time": 1200})
    assert "1200" in message and "1000" in message


def test_sts_token_buffer_time_is_not_negative() -> None:
    assert "'sts_token_buffer_time'" in config_error({"sts_token_buffer_time": -1})


# -- client-config ------------------------------------------------------------


def test_client_config_is_passed_to_botocore() -> None:
    options = parse_options(
        {
            "client-config": {
                "connect_timeout": 5,
                "retries": {"max_attempts": 2, "mode": "standard"},
            }
        }
    )
    assert options.client_config == {
        "connect_timeout": 5,
        "retries": {"max_attempts": 2, "mode": "standard"},
    }
    config = options.botocore_config()
    assert getattr(config, "connect_timeout", None) == 5
    assert getattr(config, "retries", None) == {"max_attempts": 2, "mode": "standard"}


def test_client_config_unknown_key_is_named_with_suggestion() -> None:
    message = config_error({"client-config": {"conect_timeout": 5}})
    assert "'client-config'" in message
    assert "'conect_timeout'" in message
    assert "did you mean 'connect_timeout'?" in message
    assert "read_timeout" in message  # lists the allowed keys


def test_client_config_must_be_a_dict() -> None:
    assert "'client-config'" in config_error({"client-config": "connect_timeout=5"})


@pytest.mark.parametrize(
    "bad",
    [
        {"retries": {"mode": "bogus"}},
        {"retries": {"max_attemps": 3}},
        {"retries": "three"},
    ],
)
def test_client_config_bad_values_raise_configuration_error(bad: dict[str, Any]) -> None:
    # BUG: botocore.config.Config raises InvalidRetryModeError /
    # InvalidRetryConfigurationError (BotoCoreError, not ValueError) or AttributeError,
    # which _client_config does not catch, so they escape parse_options untranslated.
    assert "'client-config'" in config_error({"client-config": bad})


# -- creation attributes, tags, message attributes ----------------------------


def test_sqs_creation_attributes_become_strings() -> None:
    options = parse_options(
        {"sqs-creation-attributes": {"MessageRetentionPeriod": 86400, "DelaySeconds": "5"}}
    )
    assert options.creation_attributes == {"MessageRetentionPeriod": "86400", "DelaySeconds": "5"}


@pytest.mark.parametrize("raw", [["DelaySeconds"], "DelaySeconds=5", {1: "x"}])
def test_sqs_creation_attributes_must_be_a_string_keyed_dict(raw: Any) -> None:
    assert "'sqs-creation-attributes'" in config_error({"sqs-creation-attributes": raw})


def test_queue_tags() -> None:
    options = parse_options({"queue_tags": {"team": "payments", "cost": 12}})
    assert options.queue_tags == {"team": "payments", "cost": "12"}
    assert "'queue_tags'" in config_error({"queue_tags": [("team", "payments")]})


def test_fetch_message_attributes_list_form() -> None:
    options = parse_options(
        {"fetch_message_attributes": ["ApproximateReceiveCount", "SentTimestamp"]}
    )
    assert options.fetch_message_attributes == ("ApproximateReceiveCount", "SentTimestamp")


def test_fetch_message_attributes_single_string() -> None:
    options = parse_options({"fetch_message_attributes": "All"})
    assert options.fetch_message_attributes == ("All",)


def test_fetch_message_attributes_dict_form() -> None:
    options = parse_options(
        {
            "fetch_message_attributes": {
                "MessageSystemAttributeNames": ["SenderId"],
                "MessageAttributeNames": ["trace-id"],
            }
        }
    )
    assert set(options.fetch_message_attributes) == {"SenderId", "trace-id"}


@pytest.mark.parametrize("raw", [[1, 2], 5, {"MessageAttributeNames": [3]}])
def test_fetch_message_attributes_rejects_non_names(raw: Any) -> None:
    assert "'fetch_message_attributes'" in config_error({"fetch_message_attributes": raw})


# -- predefined_queues --------------------------------------------------------


def test_predefined_queues_minimal() -> None:
    options = parse_options({"predefined_queues": {"orders": {"url": QUEUE_URL}}})
    queue = options.predefined_queues["orders"]
    assert queue == PredefinedQueue(name="orders", url=QUEUE_URL)
    assert queue.is_fifo is False
    assert queue.access_key_id is None
    assert queue.secret_access_key is None
    assert queue.backoff_policy == {}
    assert queue.backoff_tasks == frozenset()


def test_predefined_queues_full_kombu_form() -> None:
    options = parse_options(
        {
            "predefined_queues": {
                "orders.fifo": {
                    "url": FIFO_URL,
                    "access_key_id": "AKIDQUEUE",
                    "secret_access_key": "queue-secret",
                    "region": "eu-west-1",
                    "backoff_policy": {1: 10, "2": 20, 3: 40},
                    "backoff_tasks": ["svc.tasks.charge", "svc.tasks.refund"],
                }
            }
        }
    )
    queue = options.predefined_queues["orders.fifo"]
    assert queue.is_fifo is True
    assert queue.url == FIFO_URL
    assert queue.access_key_id == "AKIDQUEUE"
    assert isinstance(queue.secret_access_key, Secret)
    assert queue.secret_access_key.reveal() == "queue-secret"
    assert queue.region == "eu-west-1"
    assert dict(queue.backoff_policy) == {1: 10, 2: 20, 3: 40}
    assert queue.backoff_tasks == frozenset({"svc.tasks.charge", "svc.tasks.refund"})


def test_predefined_queues_unknown_key_is_named() -> None:
    message = config_error({"predefined_queues": {"orders": {"url": QUEUE_URL, "urll": "x"}}})
    assert "'orders'" in message
    assert "'urll'" in message
    assert "backoff_policy" in message  # lists what is allowed


@pytest.mark.parametrize(
    "spec",
    [
        {},
        {"url": None},
        {"url": "sqs.us-east-1.amazonaws.com/123/orders"},
        {"url": 5},
    ],
)
def test_predefined_queue_needs_an_http_url(spec: dict[str, Any]) -> None:
    message = config_error({"predefined_queues": {"orders": spec}})
    assert "'orders'" in message
    assert "'url'" in message


def test_predefined_queue_spec_must_be_a_dict() -> None:
    assert "'orders'" in config_error({"predefined_queues": {"orders": QUEUE_URL}})


@pytest.mark.parametrize(
    "policy", [{1: "ten"}, {"first": 10}, {1: -5}, {1: MAX_VISIBILITY_TIMEOUT + 1}, [10, 20]]
)
def test_predefined_queue_bad_backoff_policy(policy: Any) -> None:
    message = config_error(
        {"predefined_queues": {"orders": {"url": QUEUE_URL, "backoff_policy": policy}}}
    )
    assert "backoff_policy" in message
    assert "'orders'" in message


@pytest.mark.parametrize("tasks", ["svc.tasks.charge", [1, 2]])
def test_predefined_queue_backoff_tasks_must_be_a_list_of_names(tasks: Any) -> None:
    message = config_error(
        {"predefined_queues": {"orders": {"url": QUEUE_URL, "backoff_tasks": tasks}}}
    )
    assert "'backoff_tasks'" in message


@pytest.mark.parametrize(
    "spec",
    [
        {"url": QUEUE_URL, "backoff_policy": {1: "ten"}},
        {"url": QUEUE_URL, "access_key_id": 5},
        {"url": QUEUE_URL, "secret_access_key": 5},
    ],
)
def test_predefined_queue_field_errors_name_the_queue_readably(spec: dict[str, Any]) -> None:
    # BUG: nested field validators get f"{where} ..." as the option *name*, which is
    # then repr()'d: 'transport option "transport option \'predefined_queues\', queue ...'.
    # And a bad secret_access_key is reported as "transport option 'secret_access_key'"
    # without the queue it belongs to.
    message = config_error({"predefined_queues": {"orders": spec}})
    assert "'orders'" in message
    assert message.count("transport option") == 1


def test_predefined_queues_must_be_a_dict() -> None:
    assert "'predefined_queues'" in config_error({"predefined_queues": [QUEUE_URL]})


# -- unknown options ----------------------------------------------------------


@pytest.mark.parametrize(
    ("typo", "meant"),
    [
        ("wait_time_second", "wait_time_seconds"),
        ("visiblity_timeout", "visibility_timeout"),
        ("queue_name_prefx", "queue_name_prefix"),
        ("client_config", "client-config"),
        ("sqs_creation_attributes", "sqs-creation-attributes"),
    ],
)
def test_unknown_option_is_named_with_suggestion(typo: str, meant: str) -> None:
    message = config_error({typo: 1})
    assert f"unknown transport option {typo!r}" in message
    assert f"did you mean {meant!r}?" in message


def test_unknown_option_without_close_match_lists_known_options() -> None:
    message = config_error({"zzzz": 1})
    assert "'zzzz'" in message
    assert "did you mean" not in message
    assert "wait_time_seconds" in message


# -- endpoint from hostname/port ----------------------------------------------


@pytest.mark.parametrize(
    ("hostname", "port", "url"),
    [
        ("127.0.0.1", 9324, "http://127.0.0.1:9324"),
        ("localhost", 4566, "http://localhost:4566"),
        ("::1", 4566, "http://[::1]:4566"),
        ("localhost", None, "http://localhost"),
        ("sqs.eu-west-1.amazonaws.com", None, "https://sqs.eu-west-1.amazonaws.com"),
        ("sqs.example.com", 8443, "https://sqs.example.com:8443"),
        ("10.0.0.5", 9324, "https://10.0.0.5:9324"),
    ],
)
def test_hostname_selects_endpoint(hostname: str, port: int | None, url: str) -> None:
    options = parse_options(hostname=hostname, port=port)
    assert options.endpoint_url == url
    assert options.is_secure is url.startswith("https")


def test_is_secure_false_forces_http_for_remote_host() -> None:
    options = parse_options({"is_secure": False}, hostname="sqs.example.com", port=80)
    assert options.endpoint_url == "http://sqs.example.com:80"
    assert options.is_secure is False


def test_is_secure_true_forces_https_for_loopback() -> None:
    options = parse_options({"is_secure": "true"}, hostname="localhost", port=4566)
    assert options.endpoint_url == "https://localhost:4566"


def test_explicit_endpoint_url_wins_over_hostname() -> None:
    options = parse_options({"endpoint_url": "https://vpce.example.com"}, hostname="localhost")
    assert options.endpoint_url == "https://vpce.example.com"


def test_no_hostname_means_aws_default_endpoint() -> None:
    assert parse_options().endpoint_url is None


# -- credentials in the URL ---------------------------------------------------


def test_url_credentials_are_used() -> None:
    options = parse_options(userid="AKIDEXAMPLE", password="wJalrXUtnFEMI")
    assert options.access_key_id == "AKIDEXAMPLE"
    assert options.secret_access_key == Secret("wJalrXUtnFEMI")


@pytest.mark.parametrize(("userid", "password"), [("AKIDEXAMPLE", None), (None, "s3cr3t-canary")])
def test_half_credentials_in_url_are_rejected(userid: str | None, password: str | None) -> None:
    message = config_error(userid=userid, password=password)
    assert "half of the credentials" in message
    assert "s3cr3t-canary" not in message


# -- secrets ------------------------------------------------------------------


def test_secret_repr_and_str_hide_the_value() -> None:
    secret = Secret("hunter2-canary")
    assert "hunter2-canary" not in repr(secret)
    assert "hunter2-canary" not in str(secret)
    assert "hunter2-canary" not in f"{secret}"
    assert secret.reveal() == "hunter2-canary"
    assert secret == Secret("hunter2-canary")
    assert secret != Secret("other")
    assert secret != "hunter2-canary"
    assert hash(secret) == hash(Secret("hunter2-canary"))


def test_options_repr_never_shows_secrets() -> None:
    options = parse_options(
        {
            "session_token": "tok-canary",
            "predefined_queues": {
                "orders": {
                    "url": QUEUE_URL,
                    "access_key_id": "AKIDQUEUE",
                    "secret_access_key": "pq-canary",
                }
            },
        },
        userid="AKIDEXAMPLE",
        password="s3cr3t-canary",
    )
    assert options.secret_access_key is not None
    assert options.secret_access_key.reveal() == "s3cr3t-canary"
    assert options.session_token is not None
    assert options.session_token.reveal() == "tok-canary"
    for text in (repr(options), str(options), repr(options.predefined_queues)):
        for canary in ("s3cr3t-canary", "tok-canary", "pq-canary"):
            assert canary not in text


def test_options_repr_never_shows_predefined_exchange_secrets() -> None:
    # BUG: Kombu's predefined_exchanges take access_key_id/secret_access_key per
    # exchange; _predefined_exchanges stores them as a plain dict, so the secret key
    # appears in repr(Options) (and in any log of the options).
    options = parse_options(
        {
            "predefined_exchanges": {
                "events": {
                    "arn": "arn:aws:sns:us-east-1:123456789012:events",
                    "access_key_id": "AKIDEXCHANGE",
                    "secret_access_key": "ex-canary",
                }
            }
        }
    )
    assert "ex-canary" not in repr(options)


@pytest.mark.parametrize(
    "raw",
    [
        {"session_token": ["tok-canary"]},
        {"session_token": {"value": "tok-canary"}},
        {"predefined_queues": {"orders": {"url": QUEUE_URL, "secret_access_key": ["pq-canary"]}}},
        {"predefined_queues": {"orders": {"url": QUEUE_URL, "secret_access_key": b"pq-canary"}}},
    ],
)
def test_bad_secret_values_are_not_echoed(raw: dict[str, Any]) -> None:
    message = config_error(raw)
    assert "tok-canary" not in message
    assert "pq-canary" not in message


def test_predefined_queues_given_as_a_string_does_not_echo_secrets() -> None:
    # BUG: a predefined_queues value read from an environment variable and not
    # json-decoded is a str; _fail() repr()s the whole value into the error message,
    # secret_access_key included.
    raw = f'{{"orders": {{"url": "{QUEUE_URL}", "secret_access_key": "pq-canary"}}}}'
    message = config_error({"predefined_queues": raw})
    assert "'predefined_queues'" in message
    assert "pq-canary" not in message
