"""Retry policies: how long to wait after a failure, and when to give up.

Every retry loop of sqsbus takes its pauses and its attempt count from a :class:`Backoff`
defined here, so the policies can be read (and tuned) side by side:

* :data:`SQS_BATCH_RETRY`: entries of a ``SendMessageBatch`` (group commit) or of a
  ``DeleteMessageBatch`` / ``ChangeMessageVisibilityBatch`` (acker, parking) that SQS did
  not take for a transient reason;
* :data:`RECEIVE_RETRY`: consecutive failed receives of a receiver thread before the error
  reaches the consumer (Kombu then reconnects);
* :data:`POLICY_WRITE_RETRY`: writes of a queue policy that other processes keep
  overwriting (exchange subscriptions).

Pauses grow exponentially up to a cap, and each is drawn at random from its upper part
(*jitter*), so processes that failed together do not retry together.

Foundation layer: this module imports nothing from sqsbus.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Final

#: Exponents beyond this are not computed (the cap applies long before).
_MAX_EXPONENT: Final = 64


@dataclass(frozen=True)
class Backoff:
    """Jittered exponential backoff with a cap, and how many attempts to make in all.

    After the ``n``-th failed attempt (``n`` ≥ 1) the next one waits ``first * 2**(n-1)``
    seconds, at most ``cap``, less a random share of up to ``jitter`` of it: between
    ``(1 - jitter) * pause`` and ``pause``.  After ``attempts`` failed attempts there is
    no next one.
    """

    #: Pause (before jitter) after the first failure, in seconds.
    first: float
    #: Longest pause (before jitter), in seconds.
    cap: float
    #: Attempts in all, the first one included.
    attempts: int
    #: Share of each pause drawn at random (0: none, 0.5: the upper half).
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if not 0 < self.first <= self.cap:
            raise ValueError(f"backoff needs 0 < first <= cap, not {self.first}, {self.cap}")
        if self.attempts < 1:
            raise ValueError(f"backoff needs at least one attempt, not {self.attempts}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"backoff jitter must be within 0 and 1, not {self.jitter}")

    def ceiling(self, failures: int) -> float:
        """The longest pause after ``failures`` failed attempts (the pause without jitter)."""
        if failures < 1:
            raise ValueError(f"a pause follows a failure: failures must be >= 1, not {failures}")
        exponent = min(failures - 1, _MAX_EXPONENT)
        return min(self.cap, self.first * 2.0**exponent)

    def delay(self, failures: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after ``failures`` failed attempts before the next one."""
        ceiling = self.ceiling(failures)
        uniform = random.uniform if rng is None else rng.uniform
        return uniform(ceiling * (1 - self.jitter), ceiling)

    def exhausted(self, failures: int) -> bool:
        """Whether ``failures`` failed attempts are all this policy makes (give up now)."""
        return failures >= self.attempts


#: Batch entries SQS did not take for a transient reason (throttling, 5xx, network, or an
#: entry not marked as the sender's fault): 5 attempts, pauses of 0.2 s doubling up to 5 s.
SQS_BATCH_RETRY: Final = Backoff(first=0.2, cap=5.0, attempts=5)
#: Receives of one receiver thread: after the third transient failure in a row the error
#: goes to the consuming thread, which makes Kombu/Celery reconnect and log it.
RECEIVE_RETRY: Final = Backoff(first=1.0, cap=10.0, attempts=3)
#: Writes of a queue policy other writers keep overwriting: 8, verified after pauses of
#: 50 ms doubling up to 1 s.
POLICY_WRITE_RETRY: Final = Backoff(first=0.05, cap=1.0, attempts=8)
