"""Slow side jobs do not hold up the threads whose timing matters.

Behind a proxy that makes every ``SendMessageBatch`` take 8 s, parking a message at the
visibility cap (shortened here) is slow. Meanwhile the lease keeper must go on extending the
other held message, which another consumer must therefore not receive.
"""

from __future__ import annotations

import time

import pytest
from kombu_helpers import connect, direct_queue, get_within, publish

from sqsbus.local import LocalEndpoint
from sqsbus.testing.proxy import FaultProxy, Faults

pytestmark = pytest.mark.timeout(120)


def test_a_slow_parking_does_not_hold_up_the_other_leases(
    endpoint: LocalEndpoint, prefix: str
) -> None:
    parked, held = direct_queue("parked"), direct_queue("held")
    slow_sends = Faults(latency_ms=8000, operations=("SendMessageBatch",))
    with FaultProxy(endpoint.url, faults=slow_sends) as proxy, connect(endpoint, prefix) as other:
        publish(other, parked, ["parked"])
        publish(other, held, ["held"])
        with connect(endpoint, prefix, endpoint_url=proxy.url, lease_seconds=4) as holder:
            holder.transport.leases.max_total_seconds = 8
            assert get_within(parked(holder.default_channel), 5) is not None
            time.sleep(6.5)  # extended at 2 s and 4 s, capped at 6 s: its parking sends for 8 s
            message = get_within(held(holder.default_channel), 5)
            assert message is not None

            # Its lease (4 s) is due at +2 s and +4 s, while the parking still sends: were
            # the keeper waiting for the parking, the message would be visible at +4 s.
            assert get_within(held(other.default_channel), 5.0) is None
            assert holder.transport.leases.extended >= 2
            message.ack()
