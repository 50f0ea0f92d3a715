"""Expiry of temporary queues whose process died without closing its connection.

SQS has no queue expiry (AMQP's ``x-expires``).  sqsbus deletes a temporary queue
(exclusive, or auto-delete with ``x-expires``: Celery's pidbox, reply and event queues)
when the connection that declared it closes, but a process killed with SIGKILL never
closes it.  So:

* a temporary queue is created (or, if it exists, tagged) with its expiry in seconds
  (:data:`EXPIRES_TAG`: ``x-expires``, at least ``temporary_queue_min_expires``) and the
  time its owner was last alive (:data:`ALIVE_TAG`); each SNS subscription it gets is
  recorded in a :data:`SUBSCRIPTION_TAG` tag;
* while its connection is open, :data:`KEEPER` (one thread per process) rewrites
  :data:`ALIVE_TAG` every third of the expiry: one ``TagQueue`` per queue and period;
* :class:`Sweeper` deletes the queues whose owner was last alive longer ago than their
  expiry, with their subscriptions.  It only looks at queues under the prefix whose names
  match ``orphan_queue_patterns``, and never deletes a queue without the tags.  Processes
  that keep temporary queues (Celery workers, ``celery events``, Flower) sweep once per
  ``orphan_sweep_interval``, checking at most :data:`CHECKS_PER_SWEEP` queues picked at
  random, so a sweep costs the same whatever the number of queues and processes;
* a connection still open when its interpreter exits normally has its temporary queues
  deleted then, with their subscriptions, by :data:`EXIT_CLEANUP` (within
  :data:`EXIT_CLEANUP_SECONDS`): Celery's short-lived clients (``celery inspect``,
  ``control``, ``status``) take a connection from the app's pool and never close it.  The
  sweeps are for the processes that die.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import math
import os
import random
import socket
import threading
import time
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Final, Protocol

from sqsbus.aws import AWS, call
from sqsbus.config import Options
from sqsbus.engine.parking import PARKING_QUEUE_PREFIX, empty_parking_queue
from sqsbus.engine.publisher import Publisher
from sqsbus.errors import AccessDeniedError, QueueDoesNotExist, SQSBusError
from sqsbus.forks import reset_in_child
from sqsbus.limits import MAX_TAG_VALUE_LENGTH
from sqsbus.log_fields import message_fields
from sqsbus.queues import QueueDirectory, QueueRef, entity_name

logger = logging.getLogger(__name__)

#: Tag: seconds after its owner was last alive that the queue may be deleted.
EXPIRES_TAG: Final = "sqsbus:expires"
#: Tag: Unix time (whole seconds, rounded up) at which its owner was last alive.
ALIVE_TAG: Final = "sqsbus:alive"
#: Tag: ``host:pid`` of the owner, for people reading the tags.
OWNER_TAG: Final = "sqsbus:owner"
#: Tag key prefix: one tag per SNS subscription of the queue, its value the subscription ARN.
SUBSCRIPTION_TAG: Final = "sqsbus:sub:"
#: Most queues an automatic sweep reads the tags of (random pick among the candidates).
CHECKS_PER_SWEEP: Final = 30
#: The alive mark is refreshed this many times per expiry period.
REFRESHES_PER_EXPIRY: Final = 3
#: Seconds before a failed refresh is retried (at most the refresh period).
RETRY_SECONDS: Final = 5.0
#: Most seconds a normal interpreter exit waits for the temporary queues of connections left
#: open to be deleted; what is left then is swept once expired, as after a crash.
EXIT_CLEANUP_SECONDS: Final = 5.0


# -- tags ----------------------------------------------------------------------------------


def expires_seconds(x_expires: Any, minimum: int) -> int:
    """Seconds a temporary queue outlives its owner: ``x-expires`` (ms), at least ``minimum``."""
    try:
        declared = math.ceil(float(x_expires) / 1000) if x_expires is not None else 0
    except (TypeError, ValueError):
        declared = 0
    return max(minimum, declared)


def refresh_seconds(expires: int) -> float:
    """Seconds between two refreshes of the alive mark of a queue expiring after ``expires``."""
    return expires / REFRESHES_PER_EXPIRY


def expiry_tags(expires: int, now: float) -> dict[str, str]:
    """The tags of a temporary queue whose owner is alive at ``now``."""
    owner = f"{socket.gethostname()}:{os.getpid()}"[:MAX_TAG_VALUE_LENGTH]
    return {EXPIRES_TAG: str(expires), ALIVE_TAG: str(math.ceil(now)), OWNER_TAG: owner}


def is_expired(tags: Mapping[str, str], now: float) -> bool:
    """True if ``tags`` say the owner was last alive longer ago than the expiry.

    False for a queue without both tags (not declared temporary by sqsbus).
    """
    try:
        expires = float(tags[EXPIRES_TAG])
        alive = float(tags[ALIVE_TAG])
    except (KeyError, ValueError):
        return False
    return now > alive + expires


def subscription_tag(subscription_arn: str) -> str:
    """The tag key recording a subscription: one per topic (the ARN without its id)."""
    topic_arn = subscription_arn.rsplit(":", 1)[0]
    return SUBSCRIPTION_TAG + hashlib.sha256(topic_arn.encode()).hexdigest()[:16]


def recorded_subscriptions(tags: Mapping[str, str]) -> list[str]:
    """The subscription ARNs recorded in a queue's tags."""
    return sorted(value for key, value in tags.items() if key.startswith(SUBSCRIPTION_TAG))


def candidate_names(names: Iterable[str], prefix: str, patterns: Iterable[str]) -> list[str]:
    """The queue names under ``prefix`` whose rest matches one of ``patterns``."""
    stem = entity_name(prefix) if prefix else ""
    patterns = tuple(patterns)
    return sorted(
        name
        for name in names
        if name.startswith(stem)
        and any(fnmatchcase(name[len(stem) :], pattern) for pattern in patterns)
    )


# -- sweeping ------------------------------------------------------------------------------


@dataclass
class SweepReport:
    """What a sweep looked at and what it deleted."""

    #: Queues under the prefix.
    listed: int = 0
    #: Of those, the ones whose names match the patterns (minus this process's own).
    candidates: int = 0
    #: Candidates whose tags were read.
    checked: int = 0
    #: Names of the expired queues deleted.
    deleted: list[str] = field(default_factory=list)


class Sweeper:
    """Finds and deletes the expired temporary queues under one prefix (thread-safe)."""

    def __init__(self, aws: AWS, options: Options, directory: QueueDirectory) -> None:
        self.aws = aws
        self.options = options
        self.directory = directory

    @property
    def key(self) -> tuple[str, ...]:
        """Endpoint, region, credentials and prefix: sweeps with equal keys see the same queues."""
        return (*self.directory.scope(None), self.options.queue_name_prefix)

    def sweep(self, *, limit: int | None = None) -> SweepReport:
        """Delete expired temporary queues; read the tags of at most ``limit`` candidates.

        Costs ``ListQueues`` (one per 1,000 queues under the prefix), one ``ListQueueTags``
        per candidate checked, and for each expired queue one more ``ListQueueTags`` (a
        last look), one ``Unsubscribe`` per recorded subscription and a ``DeleteQueue``.
        """
        report = SweepReport()
        urls = self.directory.list_urls()
        report.listed = len(urls)
        own = KEEPER.kept_urls()
        names = [
            name
            for name in candidate_names(
                urls, self.options.queue_name_prefix, self.options.orphan_queue_patterns
            )
            if urls[name] not in own
        ]
        report.candidates = len(names)
        random.shuffle(names)
        for name in names[:limit]:
            report.checked += 1
            if self._delete_if_expired(name, urls[name]):
                report.deleted.append(name)
        if report.deleted:
            logger.info(
                "deleted %d orphaned temporary queue(s): %s",
                len(report.deleted),
                ", ".join(sorted(report.deleted)),
            )
        return report

    def _is_parking_queue(self, name: str) -> bool:
        stem = entity_name(self.options.queue_name_prefix) if self.options.queue_name_prefix else ""
        return name.startswith(stem + entity_name(PARKING_QUEUE_PREFIX))

    def _tags(self, name: str, url: str) -> dict[str, str] | None:
        client = self.directory.client_for(None)
        try:
            answer = call(client, "list_queue_tags", f"read tags of queue {name!r}", QueueUrl=url)
        except QueueDoesNotExist:
            return None
        return {str(k): str(v) for k, v in (answer.get("Tags") or {}).items()}

    def _delete_if_expired(self, name: str, url: str) -> bool:
        tags = self._tags(name, url)
        if tags is None or not is_expired(tags, time.time()):
            return False
        # A last look just before deleting: a process may have just declared it again.
        tags = self._tags(name, url)
        if tags is None or not is_expired(tags, time.time()):
            return False
        ref = self.directory.ref_for_url(url)
        if self._is_parking_queue(name):
            # Messages its dead owner held past the 12-hour cap: send them home first.
            failed = empty_parking_queue(
                ref, Publisher(self.directory), self.directory.queue_in_scope
            )
            if failed:
                logger.error(
                    "kept orphaned parking queue %s: %d message(s) could not be sent home",
                    name,
                    failed,
                    extra=message_fields("send-home", queue=name),
                )
                return False
        # An owner cut off (not dead) may still hold messages of it: never delete those.
        held = self.directory.held_messages(ref)
        if held is not None:
            logger.warning("kept expired queue %s: %s; a later sweep looks again", name, held)
            return False
        for subscription in recorded_subscriptions(tags):
            region = subscription.split(":")[3] or None
            try:
                call(
                    self.aws.client("sns", region=region),
                    "unsubscribe",
                    f"remove subscription of orphaned queue {name!r}",
                    SubscriptionArn=subscription,
                )
            except SQSBusError as exc:
                logger.warning("could not unsubscribe orphaned queue %s: %s", name, exc)
        client = self.directory.client_for(None)
        try:
            call(client, "delete_queue", f"delete orphaned queue {name!r}", QueueUrl=url)
        except QueueDoesNotExist:
            return False  # another sweeper was faster
        self.directory.forget(name)
        owner = tags.get(OWNER_TAG, "unknown")
        logger.info("deleted queue %s: its owner %s stopped keeping it alive", name, owner)
        return True


# -- keeping alive -------------------------------------------------------------------------


@dataclass
class _Kept:
    ref: QueueRef
    expires: int
    due: float
    owners: int = 1


@dataclass
class _Sweeps:
    sweeper: Sweeper
    interval: float
    due: float
    users: int = 1
    running: bool = False


class Keeper:
    """The process's thread refreshing alive marks and running automatic sweeps.

    The thread runs while some connection keeps a temporary queue, and ends when none
    does.  A forked child starts with nothing kept (its parent owns the queues) but
    remembers when the parent last swept.
    """

    def __init__(self) -> None:
        self._kept: dict[str, _Kept] = {}
        self._sweeps: dict[tuple[str, ...], _Sweeps] = {}
        #: key -> monotonic time of this process's last sweep (inherited across fork).
        self._last_sweep: dict[tuple[str, ...], float] = {}
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def keep(self, ref: QueueRef, expires: int) -> None:
        """Refresh ``ref``'s alive mark (just written by the caller) until :meth:`release`."""
        with self._cond:
            kept = self._kept.get(ref.url)
            if kept is not None:
                kept.owners += 1
                return
            due = time.monotonic() + refresh_seconds(expires)
            self._kept[ref.url] = _Kept(ref, expires, due)
            self._wake()

    def release(self, url: str) -> None:
        with self._cond:
            kept = self._kept.get(url)
            if kept is not None:
                kept.owners -= 1
                if kept.owners <= 0:
                    del self._kept[url]

    def kept_urls(self) -> set[str]:
        with self._cond:
            return set(self._kept)

    def add_sweeps(self, sweeper: Sweeper) -> None:
        """Sweep ``sweeper``'s queues every ``orphan_sweep_interval`` until :meth:`remove_sweeps`.

        The first sweep comes after half to one interval (so short-lived clients such as
        ``celery inspect`` never sweep), or one interval after this process's last one.
        """
        interval = sweeper.options.orphan_sweep_interval
        if interval <= 0:
            return
        with self._cond:
            sweeps = self._sweeps.get(sweeper.key)
            if sweeps is not None:
                sweeps.users += 1
                return
            now = time.monotonic()
            last = self._last_sweep.get(sweeper.key)
            if last is None:
                due = now + interval * random.uniform(0.5, 1.0)
            else:
                due = max(now, last + interval)
            self._sweeps[sweeper.key] = _Sweeps(sweeper, interval, due)
            self._wake()

    def remove_sweeps(self, sweeper: Sweeper) -> None:
        with self._cond:
            sweeps = self._sweeps.get(sweeper.key)
            if sweeps is not None:
                sweeps.users -= 1
                if sweeps.users <= 0:
                    del self._sweeps[sweeper.key]

    def _wake(self) -> None:
        """Start the thread, or make it look at the schedule again (caller holds the lock)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="sqsbus-queue-keeper", daemon=True
            )
            self._thread.start()
        self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._kept and not self._sweeps:
                    self._thread = None
                    return
                now = time.monotonic()
                refreshes = [kept for kept in self._kept.values() if kept.due <= now]
                sweeps = [s for s in self._sweeps.values() if s.due <= now and not s.running]
                if not refreshes and not sweeps:
                    dues = [k.due for k in self._kept.values()] + [
                        s.due for s in self._sweeps.values()
                    ]
                    self._cond.wait(max(0.0, min(dues) - now))
                    continue
                for kept in refreshes:
                    kept.due = now + refresh_seconds(kept.expires)
                for scheduled in sweeps:
                    scheduled.running = True
                    scheduled.due = now + scheduled.interval
                    self._last_sweep[scheduled.sweeper.key] = now
            for kept in refreshes:
                self._refresh(kept)
            for scheduled in sweeps:
                threading.Thread(
                    target=self._sweep, args=(scheduled,), name="sqsbus-orphan-sweep", daemon=True
                ).start()

    def _refresh(self, kept: _Kept) -> None:
        ref = kept.ref
        try:
            call(
                ref.client,
                "tag_queue",
                f"mark temporary queue {ref.name!r} alive",
                QueueUrl=ref.url,
                Tags=expiry_tags(kept.expires, time.time()),
            )
        except (QueueDoesNotExist, AccessDeniedError) as exc:
            logger.warning("temporary queue %s: cannot keep it alive any more: %s", ref.name, exc)
            with self._cond:
                if self._kept.get(ref.url) is kept:
                    del self._kept[ref.url]
        except Exception as exc:  # the thread must survive anything; retried soon
            logger.warning("temporary queue %s: could not mark it alive: %s", ref.name, exc)
            with self._cond:
                kept.due = time.monotonic() + min(RETRY_SECONDS, refresh_seconds(kept.expires))

    def _sweep(self, scheduled: _Sweeps) -> None:
        try:
            scheduled.sweeper.sweep(limit=CHECKS_PER_SWEEP)
        except AccessDeniedError as exc:
            logger.warning(
                "orphaned temporary queues are not swept: %s (grant sqs:ListQueueTags, or set "
                "orphan_sweep_interval=0)",
                exc,
            )
        except Exception as exc:  # logged; the next sweep comes one interval later
            logger.warning("sweeping orphaned temporary queues failed: %s", exc)
        finally:
            with self._cond:
                scheduled.running = False

    def _after_fork_in_child(self) -> None:
        self._kept = {}
        self._sweeps = {}
        self._cond = threading.Condition()
        self._thread = None


#: The process's keeper.
KEEPER: Final = Keeper()
reset_in_child(KEEPER._after_fork_in_child)


# -- at interpreter exit -------------------------------------------------------------------


class TemporaryQueueOwner(Protocol):
    """A connection with temporary queues (:class:`sqsbus.kombu.transport.Transport`)."""

    #: Names of the temporary queues it has not deleted yet.
    temporary_queues: set[str]

    def drop_temporary_queues(self) -> None:
        """Delete them, with their subscriptions, and stop keeping them alive."""


class ExitCleanup:
    """Deletes, at a normal interpreter exit, the temporary queues of connections left open.

    A connection is tracked (weakly) from its first temporary queue on.  :meth:`run` (an
    ``atexit`` hook) has every tracked connection that still holds some drop them, on a
    helper thread given at most ``timeout`` seconds, so that an unreachable endpoint never
    holds the exit longer.  A forked child tracks nothing of its parent's.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._owners: weakref.WeakSet[TemporaryQueueOwner] = weakref.WeakSet()
        self._lock = threading.Lock()

    def track(self, owner: TemporaryQueueOwner) -> None:
        with self._lock:
            self._owners.add(owner)

    def run(self) -> bool:
        """Drop the temporary queues still held; False if they could not all be dropped in
        time (the rest is left to the sweeps)."""
        with self._lock:
            owners = [owner for owner in self._owners if owner.temporary_queues]
            self._owners.clear()
        if not owners:
            return True
        helper = threading.Thread(
            target=_drop_all, args=(owners,), name="sqsbus-exit-cleanup", daemon=True
        )
        try:
            helper.start()
        except RuntimeError:  # Python 3.12.0-3.12.2 start no thread in atexit hooks
            logger.info("temporary queues left at exit: sweeps delete them once expired")
            return False
        helper.join(self.timeout)
        if helper.is_alive():
            logger.warning(
                "temporary queues not deleted within %g s at exit: sweeps delete them once expired",
                self.timeout,
            )
            return False
        return True

    def _after_fork_in_child(self) -> None:
        self._owners = weakref.WeakSet()
        self._lock = threading.Lock()


def _drop_all(owners: list[TemporaryQueueOwner]) -> None:
    for owner in owners:
        try:
            owner.drop_temporary_queues()
        except Exception as exc:  # the others are dropped all the same
            logger.warning("could not delete temporary queues at exit: %s", exc)


#: The process's exit cleanup.
EXIT_CLEANUP: Final = ExitCleanup(EXIT_CLEANUP_SECONDS)
atexit.register(EXIT_CLEANUP.run)
reset_in_child(EXIT_CLEANUP._after_fork_in_child)


# -- one connection's temporary queues -----------------------------------------------------


class QueueExpiry:
    """Declares one connection's temporary queues with expiry tags and keeps them alive."""

    def __init__(self, aws: AWS, options: Options, directory: QueueDirectory) -> None:
        self.options = options
        self.directory = directory
        self.sweeper = Sweeper(aws, options, directory)
        self.enabled = options.temporary_queue_expiry and not options.predefined_queues
        #: Kombu queue name -> ref, for the queues this connection keeps alive.
        self._kept: dict[str, QueueRef] = {}
        self._sweeping = False
        self._lock = threading.Lock()

    def declare(self, queue: str, x_expires: Any = None) -> QueueRef:
        """Create (or tag) the temporary ``queue`` and keep it alive until :meth:`release`."""
        with self._lock:
            known = self._kept.get(queue)
        if not self.enabled or known is not None:
            return self.directory.ensure(queue, temporary=True)
        expires = expires_seconds(x_expires, self.options.temporary_queue_min_expires)
        tags = expiry_tags(expires, time.time())
        try:
            ref, created = self.directory.declare(queue, temporary=True, tags=tags)
            if not created:
                call(
                    ref.client,
                    "tag_queue",
                    f"tag temporary queue {ref.name!r}",
                    QueueUrl=ref.url,
                    Tags=tags,
                )
        except AccessDeniedError as exc:
            self._disable(exc)
            return self.directory.ensure(queue, temporary=True)
        with self._lock:
            if queue in self._kept:
                return ref
            self._kept[queue] = ref
            start_sweeps = not self._sweeping
            self._sweeping = True
        KEEPER.keep(ref, expires)
        if start_sweeps:
            KEEPER.add_sweeps(self.sweeper)
        return ref

    def subscribed(self, ref: QueueRef, subscription_arn: str) -> None:
        """Record a subscription of a kept queue, so a sweep can remove it with the queue."""
        with self._lock:
            kept = any(known.url == ref.url for known in self._kept.values())
        if not kept:
            return
        if len(subscription_arn) > MAX_TAG_VALUE_LENGTH:
            logger.warning(
                "subscription %s is too long to record on queue %s; if its process dies, "
                "a sweep deletes the queue but leaves the subscription",
                subscription_arn,
                ref.name,
            )
            return
        try:
            call(
                ref.client,
                "tag_queue",
                f"record a subscription of temporary queue {ref.name!r}",
                QueueUrl=ref.url,
                Tags={subscription_tag(subscription_arn): subscription_arn},
            )
        except SQSBusError as exc:
            logger.warning("could not record a subscription of queue %s: %s", ref.name, exc)

    def release(self, queue: str) -> None:
        """Stop keeping ``queue`` alive (it is being deleted)."""
        with self._lock:
            ref = self._kept.pop(queue, None)
        if ref is not None:
            KEEPER.release(ref.url)

    def close(self) -> None:
        """Stop keeping every queue of the connection alive, and its sweeps."""
        with self._lock:
            refs = list(self._kept.values())
            self._kept.clear()
            sweeping, self._sweeping = self._sweeping, False
        for ref in refs:
            KEEPER.release(ref.url)
        if sweeping:
            KEEPER.remove_sweeps(self.sweeper)

    def _disable(self, exc: SQSBusError) -> None:
        self.enabled = False
        logger.warning(
            "temporary queues of this connection are deleted when it closes, but not if its "
            "process dies: %s (grant sqs:TagQueue and sqs:ListQueueTags, or set "
            "temporary_queue_expiry=False)",
            exc,
        )
