"""Circuit-breaker state machine on a controlled clock (the Redis behaviour is tested for real in
test_store_failures.py)."""

from __future__ import annotations

from retrieval_service.breaker import BreakerState, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_threshold_probes_once_and_recovers():
    clock = Clock()
    changes: list[BreakerState] = []
    b = CircuitBreaker(3, reset_after_s=1.0, clock=clock, on_change=changes.append)
    for _ in range(2):
        assert b.allow()
        b.record_failure()
    assert b.state is BreakerState.CLOSED
    b.record_failure()
    assert b.state is BreakerState.OPEN and not b.allow()
    clock.now = 0.99
    assert not b.allow()
    clock.now = 1.0
    assert b.allow() and b.state is BreakerState.HALF_OPEN
    assert not b.allow()  # one probe at a time
    b.record_failure()  # the probe failed: open for another period
    assert b.state is BreakerState.OPEN and not b.allow()
    clock.now = 2.0
    assert b.allow()
    b.record_success()
    assert b.state is BreakerState.CLOSED and b.allow()
    assert changes == [
        BreakerState.OPEN,
        BreakerState.HALF_OPEN,
        BreakerState.OPEN,
        BreakerState.HALF_OPEN,
        BreakerState.CLOSED,
    ]


def test_success_resets_the_failure_count():
    b = CircuitBreaker(2, reset_after_s=1.0, clock=Clock())
    b.record_failure()
    b.record_success()
    b.record_failure()
    assert b.state is BreakerState.CLOSED
