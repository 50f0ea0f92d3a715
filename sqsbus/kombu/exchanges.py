"""Kombu exchanges whose bindings live in SNS, shared by every process.

An exchange is an SNS topic (:class:`~sqsbus.routing.exchanges.ExchangeRouter`); binding a
queue subscribes it, with a filter policy on the routing key for direct and topic exchanges.
So a message published from any process reaches every bound queue, including queues bound
later by other processes or hosts. With ``supports_fanout=False`` there is no SNS at all and
direct exchanges route within the process, as in Kombu's own SQS transport.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from kombu.transport import virtual

from sqsbus import codec
from sqsbus.errors import AccessDeniedError, UnsupportedExchangeType
from sqsbus.routing.exchanges import FilterCondition, topic_condition

if TYPE_CHECKING:
    from sqsbus.config import Options
    from sqsbus.queues import QueueDirectory
    from sqsbus.routing.exchanges import ExchangeRouter

logger = logging.getLogger(__name__)

#: Exchange types whose bindings are shared by every process, as SNS subscriptions.
SUPPORTED_EXCHANGE_TYPES = frozenset({"direct", "fanout", "topic"})


class ExchangeChannel(virtual.Channel):
    """The exchanges and bindings of a :class:`~sqsbus.kombu.channel.Channel`."""

    options: Options
    directory: QueueDirectory
    router: ExchangeRouter

    @property
    def uses_sns(self) -> bool:
        """Bindings are kept in SNS (``supports_fanout``, on by default)."""
        return bool(self.options.supports_fanout)

    def exchange_declare(  # type: ignore[override]
        self, exchange: str | None = None, type: str = "direct", **kwargs: Any
    ) -> Any:
        supported = self.connection.implements.exchange_type
        if type not in supported:
            hint = "" if self.uses_sns else " (fanout needs supports_fanout=True)"
            raise UnsupportedExchangeType(
                f"exchange {exchange!r} is of type {type!r}; sqsbus supports "
                f"{' and '.join(sorted(supported))} exchanges{hint}"
            )
        result = super().exchange_declare(exchange, type, **kwargs)
        if type == "fanout" and exchange and not kwargs.get("passive"):
            self.router.topic_arn(exchange)
        return result

    def _queue_bind(self, exchange: str, routing_key: str, pattern: str, queue: str) -> None:
        """Record the binding in AWS (an SNS subscription), so every process can route."""
        if not exchange or not self.uses_sns:
            return  # the default exchange routes by queue name
        kind = self.typeof(exchange).type
        condition: FilterCondition | None = routing_key
        if kind == "fanout":
            condition = None
        elif kind == "topic":
            condition = topic_condition(routing_key)
        try:
            self.router.subscribe(
                exchange,
                self.directory.ensure(queue),
                condition,
                pattern=routing_key if kind == "topic" else None,
            )
        except AccessDeniedError as exc:
            if kind != "direct":
                raise
            # Direct routing still works within this process, as in Kombu's transport.
            logger.warning(
                "binding queue %s to exchange %s stays local to this process: %s "
                "(grant the SNS permissions in docs, or set supports_fanout=False)",
                queue,
                exchange,
                exc,
            )

    def queue_unbind(
        self,
        queue: str,
        exchange: str | None = None,
        routing_key: str = "",
        arguments: Any = None,
        **kwargs: Any,
    ) -> None:
        super().queue_unbind(queue, exchange, routing_key, arguments, **kwargs)
        if exchange and self.uses_sns:
            self.router.unsubscribe(exchange, self.directory.ensure(queue))

    def basic_publish(
        self, message: dict[str, Any], exchange: str, routing_key: str, **kwargs: Any
    ) -> Any:
        """Direct: straight to the bound queues when this process bound all of them, else the
        exchange's SNS topic (reaching queues bound by any process).

        Topic exchanges always go through SNS; fanout through ``_put_fanout``.
        """
        kind = self.typeof(exchange).type if exchange else "direct"
        if (
            exchange
            and self.uses_sns
            and kind != "fanout"
            and (kind == "topic" or not self._bound_here(exchange, routing_key))
        ):
            self._inplace_augment_message(message, exchange, routing_key)
            return self._put_exchange(exchange, message, routing_key)
        return super().basic_publish(message, exchange, routing_key, **kwargs)

    def _bound_here(self, exchange: str, routing_key: str) -> bool:
        """True if the queues this process bound to ``exchange`` with ``routing_key`` are all
        the queues bound with it, by any process (as SNS says): then sending to them directly
        (batched, through S3 if large) delivers what the topic would."""
        table = self.state.exchanges.get(exchange, {}).get("table") or []
        queues = {queue for key, _pattern, queue in table if key == routing_key}
        if not queues:
            return False
        arns = {self.directory.attributes(self.directory.ensure(q)).get("QueueArn") for q in queues}
        return self.router.routes_only_to(exchange, routing_key, {a for a in arns if a})

    def _put_fanout(
        self, exchange: str, message: dict[str, Any], routing_key: str, **kwargs: Any
    ) -> None:
        self._put_exchange(exchange, message, None)

    def _put_exchange(
        self, exchange: str, message: dict[str, Any], routing_key: str | None
    ) -> None:
        properties = message.get("properties") or {}
        attributes = properties.pop("message_attributes", None)
        self.router.publish(
            exchange,
            codec.encode_body(message, base64_encoding=self.options.base64_encoding),
            routing_key=routing_key,
            message_attributes=attributes,
            group_id=properties.get("MessageGroupId"),
            deduplication_id=properties.get("MessageDeduplicationId"),
        )

    def _unbound_reason(self, queue: str, payload: dict[str, Any]) -> str | None:
        """Why a topic-exchange message that reached ``queue`` is meant for no binding of it
        (this process's or, recorded on the queue, any other's); None to deliver it.

        A topic subscription's prefix filter lets through a superset of its patterns."""
        delivery_info = payload["properties"]["delivery_info"]
        exchange = delivery_info.get("exchange")
        if not exchange or exchange not in self.state.exchanges:
            return None
        exchange_type = self.typeof(exchange)
        if exchange_type.type != "topic":
            return None
        table = self.get_table(exchange)
        mine = [pattern for pattern, _regex, bound in table if bound == queue]
        if not mine:
            return None  # bound by another process only: its subscription admitted it
        key = str(delivery_info.get("routing_key", ""))
        if queue in exchange_type.lookup(table, exchange, key, None):
            return None
        return self.router.bindings.refusal(self.directory.ensure(queue), exchange, key, mine)
