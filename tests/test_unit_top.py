"""Pure logic of ``sqsbus top``: the request pacer, the refresh plan and its cost, the net
change per second, and the frame (formats, cut to the terminal, dead-letter rows)."""

from __future__ import annotations

import datetime
import threading
import time

import pytest

from sqsbus.admin.budget import RefreshPlan, RequestPacer
from sqsbus.admin.cloudwatch import MetricsReading, QueueMetrics
from sqsbus.admin.top import QueueSample, TopSnapshot, net_change_per_second
from sqsbus.admin.top_screen import format_age, format_rate, frame_lines


class FakeTime:
    """A clock that moves only when something sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_pacer_spaces_requests_by_the_rate() -> None:
    fake = FakeTime()
    pacer = RequestPacer(10, clock=fake.clock, sleep=fake.sleep)
    starts = []
    for _ in range(5):
        pacer.acquire()
        starts.append(fake.now)
    assert starts == pytest.approx([100.0, 100.1, 100.2, 100.3, 100.4])
    fake.now += 5  # idle: no credit is saved up for a burst later
    pacer.acquire()
    pacer.acquire()
    assert fake.now == pytest.approx(105.5)


def test_pacer_gives_each_thread_its_own_slot() -> None:
    fake = FakeTime()
    pacer = RequestPacer(100, clock=fake.clock, sleep=lambda seconds: None)  # time stands
    waits: list[float] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(10):
            waited = pacer.acquire()
            with lock:
                waits.append(waited)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(waits) == pytest.approx([slot / 100 for slot in range(40)])


def test_pacer_takes_real_time_across_threads() -> None:
    pacer = RequestPacer(100)
    started = time.monotonic()
    threads = [
        threading.Thread(target=lambda: [pacer.acquire() for _ in range(10)]) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert time.monotonic() - started >= 39 / 100


def test_pacer_refuses_a_rate_of_zero() -> None:
    with pytest.raises(ValueError, match="above 0"):
        RequestPacer(0)


def plan(queues: int, **changes: object) -> RefreshPlan:
    values: dict[str, object] = {
        "queues": queues,
        "fifo_queues": 0,
        "requested_interval": 5.0,
        "max_requests_per_second": 10.0,
        "listing": True,
        "cloudwatch": False,
    }
    values.update(changes)
    return RefreshPlan(**values)  # type: ignore[arg-type]


def test_plan_keeps_the_interval_asked_while_the_queues_fit_in_it() -> None:
    small = plan(10)
    assert (small.interval, small.stretched) == (5.0, False)
    # 720 refreshes of 10 reads, 60 listings: 7,260 requests at $0.40 per million.
    assert small.sqs_requests_per_hour == 7260
    assert small.sqs_cost_per_hour == pytest.approx(7260 * 0.40 / 1e6)
    assert "10 GetQueueAttributes per refresh every 5 s" in small.describe()


def test_plan_stretches_the_interval_for_many_queues() -> None:
    many = plan(2500, max_requests_per_second=50.0)
    assert many.interval == 50.0  # 2,500 reads at 50 per second
    assert many.stretched
    assert many.list_requests == 3  # pages of 1,000
    assert many.sqs_requests_per_hour == 2500 * 72 + 3 * 60
    assert "stretched from 5 s by --max-requests-per-second 50" in many.describe()


def test_plan_prices_fifo_reads_and_cloudwatch_metrics() -> None:
    mixed = plan(10, fifo_queues=4, cloudwatch=True, listing=False)
    assert mixed.list_requests == 0
    assert mixed.sqs_cost_per_hour == pytest.approx((6 * 720 * 0.40 + 4 * 720 * 0.50) / 1e6)
    # 3 metrics per queue, once a minute, at $0.01 per 1,000.
    assert mixed.cloudwatch_metrics_per_hour == 1800
    assert mixed.cloudwatch_cost_per_hour == pytest.approx(0.018)
    assert mixed.cloudwatch_requests == 1
    assert plan(200, cloudwatch=True).cloudwatch_requests == 2  # 600 queries, 500 a request


def test_net_change_per_second() -> None:
    assert net_change_per_second(None, 10.0, 5) is None
    assert net_change_per_second((10.0, 5), 10.0, 9) is None
    assert net_change_per_second((10.0, 5), 12.0, 9) == 2.0
    assert net_change_per_second((10.0, 9), 14.0, 1) == -2.0


def test_formats() -> None:
    assert [format_rate(v, signed=True) for v in (None, 0.001, 2.0, -0.4, 1.234)] == [
        "-",
        "0",
        "+2",
        "-0.4",
        "+1.23",
    ]
    assert format_rate(1.5) == "1.5"
    assert [format_age(s) for s in (None, 42, 312, 3 * 3600 + 4 * 60, 2 * 86400 + 3 * 3600)] == [
        "-",
        "42s",
        "5m12s",
        "3h04m",
        "2d03h",
    ]


def snapshot(queues: list[QueueSample], metrics: MetricsReading | None = None) -> TopSnapshot:
    return TopSnapshot(
        taken_at=datetime.datetime(2026, 12, 3, 7, 30, tzinfo=datetime.UTC),
        where="http://127.0.0.1:4566 (us-east-1)",
        queues=queues,
        plan=plan(len(queues), cloudwatch=metrics is not None),
        requests={"sqs.GetQueueAttributes": len(queues)},
        total_requests=len(queues),
        metrics=metrics,
    )


def sample(name: str, visible: int = 0, *, dead: bool = False) -> QueueSample:
    return QueueSample(name, name, f"http://q/{name}", visible, 0, 0, False, dead)


def test_frame_marks_dead_letter_rows_and_fits_the_terminal() -> None:
    queues = [sample(f"q{n:02d}", n) for n in range(30)] + [sample("z-dlq", 3, dead=True)]
    lines, marked = frame_lines(snapshot(queues))
    assert lines[marked.popitem()[0]].startswith("z-dlq ")
    row = next(line for line in lines if line.startswith("z-dlq"))
    assert row.split()[-2:] == ["DLQ", "-"]

    lines, marked = frame_lines(snapshot(queues), width=40, height=20)
    assert len(lines) <= 20 and max(map(len, lines)) <= 40
    assert any(line.startswith("... ") and "more queue(s)" in line for line in lines)
    assert marked == {}  # the dead-letter queue's row is among those cut


def test_frame_says_why_cloudwatch_columns_are_empty() -> None:
    read_at = datetime.datetime(2026, 12, 3, 7, 30, tzinfo=datetime.UTC)
    denied = MetricsReading("denied", read_at, notice="CloudWatch: access denied to ...")
    lines, _ = frame_lines(snapshot([sample("a", 1)], denied))
    assert next(line for line in lines if line.startswith("a ")).split()[5:8] == ["denied"] * 3
    assert "CloudWatch: access denied to ..." in lines

    metrics = QueueMetrics(2.0, 1.5, 312.0, read_at)
    ok = MetricsReading("ok", read_at, {"a": metrics})
    queue = QueueSample("a", "a", "http://q/a", 1, 0, 0, False, False, metrics=metrics)
    lines, _ = frame_lines(snapshot([queue], ok))
    assert next(line for line in lines if line.startswith("a ")).split()[5:8] == [
        "2",
        "1.5",
        "5m12s",
    ]


def test_frame_escapes_control_characters_of_names() -> None:
    lines, _ = frame_lines(snapshot([sample("\x1b[2Jq\u202e")]))
    assert not any("\x1b" in line or "\u202e" in line for line in lines)
    assert any(line.startswith("\\x1b[2Jq\\u202e") for line in lines)
