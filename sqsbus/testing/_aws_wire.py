"""AWS wire shapes for the fault proxy: which operation a request is, and the answers AWS
gives when it throttles, fails, or refuses some entries of a batch.

Three protocols reach a local SQS/SNS/S3 endpoint from botocore:

* JSON (SQS): ``POST /`` with ``X-Amz-Target: AmazonSQS.<Operation>``. SQS's JSON API is
  "query compatible": errors carry ``__type`` (``com.amazonaws.sqs#<Code>``) and an
  ``x-amzn-query-error: <Code>;<Sender|Receiver>`` header, from which botocore takes the
  error code.
* query (SNS, STS, SQS before JSON): a form body with ``Action=<Operation>`` and
  ``Version=<api version>``; errors are ``<ErrorResponse>`` XML documents.
* REST-XML (S3): anything else; errors are ``<Error>`` XML documents.

Throttling answers use codes botocore retries in both its ``standard`` (the default) and
``legacy`` retry modes: SQS ``RequestThrottled`` with HTTP 403 (the SQS model's throttling
error), query-protocol ``Throttling`` with HTTP 400 (AWS's common throttling error, which SNS
answers) and S3 ``SlowDown`` with HTTP 503. (SNS's ``Throttled`` with HTTP 429 is retried too,
by its status. SQS's ``OverLimit``, HTTP 403, is not: it reports a real limit, such as too
many in-flight messages, not a request rate.)
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

from sqsbus.testing._http import Request, Response

__all__ = [
    "BATCH_OPERATIONS",
    "Operation",
    "add_failed_entries",
    "batch_entry_ids",
    "error_answer",
    "expired_token_answer",
    "failed_batch_answer",
    "identify",
    "throttle_answer",
    "without_entries",
]

#: SQS batch operations whose entries the proxy can fail one by one.
BATCH_OPERATIONS: Final = frozenset(
    {"SendMessageBatch", "DeleteMessageBatch", "ChangeMessageVisibilityBatch"}
)
_JSON_SERVICES: Final = {"AmazonSQS": "sqs", "GraniteServiceVersion20100801": "cloudwatch"}
_QUERY_SERVICES: Final = {"2010-03-31": "sns", "2012-11-05": "sqs", "2011-06-15": "sts"}
_QUERY_NAMESPACES: Final = {
    "sns": "http://sns.amazonaws.com/doc/2010-03-31/",
    "sqs": "http://queue.amazonaws.com/doc/2012-11-05/",
    "sts": "https://sts.amazonaws.com/doc/2011-06-15/",
}
_JSON_CONTENT_TYPE: Final = "application/x-amz-json-1.0"
_ERROR_NAMES: Final = {500: "InternalError", 503: "ServiceUnavailable"}
_ERROR_MESSAGES: Final = {
    500: "We encountered an internal error. Please try again.",
    503: "Service is unable to handle request.",
}
#: What AWS says about a request signed with credentials whose session has ended.
EXPIRED_TOKEN_CODE: Final = "ExpiredToken"
EXPIRED_TOKEN_MESSAGE: Final = "The security token included in the request is expired"
_S3_EXPIRED_TOKEN_MESSAGE: Final = "The provided token has expired."
#: Code and message of a batch entry the proxy failed.
ENTRY_FAILURE_CODE: Final = "InternalError"
ENTRY_FAILURE_MESSAGE: Final = "We encountered an internal error. Please try again."


@dataclass(frozen=True)
class Operation:
    """What a request asks for: ``service`` (sqs, sns, sts, s3, ...), ``name`` and protocol."""

    service: str
    name: str
    protocol: str  # "json", "query" or "rest-xml"

    @property
    def key(self) -> str:
        """The counting key, e.g. ``sqs.SendMessageBatch``, ``sns.Publish``, ``s3.PUT``."""
        return f"{self.service}.{self.name}"

    @property
    def is_sqs_batch(self) -> bool:
        return self.protocol == "json" and self.service == "sqs" and self.name in BATCH_OPERATIONS


def identify(request: Request) -> Operation:
    """The operation a botocore request performs."""
    target = request.header("x-amz-target")
    if target and "." in target:
        prefix, _, name = target.rpartition(".")
        return Operation(_JSON_SERVICES.get(prefix, prefix.lower()), name, "json")
    form: dict[str, list[str]] = {}
    content_type = (request.header("content-type") or "").lower()
    if content_type.startswith("application/x-www-form-urlencoded") and not request.chunked:
        form = parse_qs(request.body.decode("utf-8", errors="replace"))
    query = parse_qs(urlsplit(request.target).query)
    action = (form.get("Action") or query.get("Action") or [""])[0]
    if action:
        version = (form.get("Version") or query.get("Version") or [""])[0]
        return Operation(_QUERY_SERVICES.get(version, "query"), action, "query")
    return Operation("s3", request.method.upper(), "rest-xml")


def _request_id() -> str:
    return str(uuid.uuid4())


def _json_error(
    status: int,
    code: str,
    fault: str,
    message: str,
    service: str,
    *,
    error_type: str | None = None,
    query_code: str | None = "",
) -> Response:
    """A JSON-protocol error; ``query_code`` is the query-protocol code of the
    ``x-amzn-query-error`` header ("": ``code``; None: no header)."""
    error_type = error_type or f"com.amazonaws.{service}#{code}"
    body = json.dumps({"__type": error_type, "message": message}).encode()
    headers = [("Content-Type", _JSON_CONTENT_TYPE), ("x-amzn-RequestId", _request_id())]
    if query_code is not None:
        headers.append(("x-amzn-query-error", f"{query_code or code};{fault}"))
    return Response(status, headers, body)


def _query_error(status: int, code: str, fault: str, message: str, service: str) -> Response:
    namespace = _QUERY_NAMESPACES.get(service)
    opening = f'<ErrorResponse xmlns="{namespace}">' if namespace else "<ErrorResponse>"
    body = (
        f"{opening}<Error><Type>{fault}</Type><Code>{code}</Code>"
        f"<Message>{escape(message)}</Message></Error>"
        f"<RequestId>{_request_id()}</RequestId></ErrorResponse>"
    ).encode()
    return Response(status, [("Content-Type", "text/xml")], body)


def _rest_xml_error(status: int, code: str, message: str) -> Response:
    request_id = _request_id()
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{escape(message)}</Message>"
        f"<RequestId>{request_id}</RequestId></Error>"
    ).encode()
    headers = [("Content-Type", "application/xml"), ("x-amz-request-id", request_id)]
    return Response(status, headers, body)


def throttle_answer(operation: Operation) -> Response:
    """The answer AWS gives when it throttles ``operation``."""
    if operation.protocol == "json":
        if operation.service == "sqs":
            return _json_error(403, "RequestThrottled", "Sender", "Request is throttled.", "sqs")
        return _json_error(400, "ThrottlingException", "Sender", "Rate exceeded", operation.service)
    if operation.protocol == "query":
        return _query_error(400, "Throttling", "Sender", "Rate exceeded", operation.service)
    return _rest_xml_error(503, "SlowDown", "Please reduce your request rate.")


def expired_token_answer(operation: Operation) -> Response:
    """The answer AWS gives to a request signed with expired temporary credentials.

    SQS and SNS (and STS) answer ``ExpiredToken`` with HTTP 403: over SQS's JSON protocol as
    a common (front-end) ``ExpiredTokenException`` whose ``x-amzn-query-error`` header names
    the query-protocol code ``ExpiredToken``, which botocore reports. S3 answers
    ``ExpiredToken`` with HTTP 400. botocore retries none of them.
    """
    if operation.protocol == "json":
        return _json_error(
            403,
            "ExpiredTokenException",
            "Sender",
            EXPIRED_TOKEN_MESSAGE,
            operation.service,
            error_type="com.amazon.coral.service#ExpiredTokenException",
            query_code=EXPIRED_TOKEN_CODE if operation.service == "sqs" else None,
        )
    if operation.protocol == "query":
        return _query_error(
            403, EXPIRED_TOKEN_CODE, "Sender", EXPIRED_TOKEN_MESSAGE, operation.service
        )
    return _rest_xml_error(400, EXPIRED_TOKEN_CODE, _S3_EXPIRED_TOKEN_MESSAGE)


def error_answer(operation: Operation, status: int) -> Response:
    """A server-side failure of ``operation``: 500 InternalError or 503 ServiceUnavailable."""
    code = _ERROR_NAMES[status]
    message = _ERROR_MESSAGES[status]
    if operation.protocol == "json":
        return _json_error(status, code, "Receiver", message, operation.service)
    if operation.protocol == "query":
        return _query_error(status, code, "Receiver", message, operation.service)
    return _rest_xml_error(status, code, message)


def batch_entry_ids(request: Request) -> list[str]:
    """The ``Id`` of every entry of an SQS batch request (empty if it has none)."""
    try:
        document = json.loads(request.body)
    except ValueError:
        return []
    entries = document.get("Entries") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        return []
    return [str(entry.get("Id")) for entry in entries if isinstance(entry, dict)]


def without_entries(request: Request, failed: Sequence[str]) -> Request:
    """The batch request with the entries whose ``Id`` is in ``failed`` removed."""
    document: dict[str, Any] = json.loads(request.body)
    drop = set(failed)
    document["Entries"] = [e for e in document["Entries"] if str(e.get("Id")) not in drop]
    return request.with_body(json.dumps(document).encode())


def _failed_entry(entry_id: str) -> dict[str, Any]:
    return {
        "Id": entry_id,
        "SenderFault": False,
        "Code": ENTRY_FAILURE_CODE,
        "Message": ENTRY_FAILURE_MESSAGE,
    }


def failed_batch_answer(failed: Sequence[str]) -> Response:
    """A successful batch answer in which every entry failed (nothing was forwarded)."""
    body = json.dumps({"Successful": [], "Failed": [_failed_entry(i) for i in failed]}).encode()
    headers = [("Content-Type", _JSON_CONTENT_TYPE), ("x-amzn-RequestId", _request_id())]
    return Response(200, headers, body)


def add_failed_entries(response: Response, failed: Sequence[str]) -> Response:
    """The upstream's batch answer with ``failed`` entries added to its ``Failed`` list.

    Answers that are not a successful JSON batch result are returned unchanged: the whole
    batch failed there anyway.
    """
    if response.status != 200:
        return response
    try:
        document = json.loads(response.body)
    except ValueError:
        return response
    if not isinstance(document, dict):
        return response
    document.setdefault("Successful", [])
    document["Failed"] = list(document.get("Failed") or []) + [_failed_entry(i) for i in failed]
    return Response(
        response.status,
        response.headers,
        json.dumps(document).encode(),
        response.reason,
        response.reusable,
    )
