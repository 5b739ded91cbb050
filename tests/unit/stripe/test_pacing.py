"""The pacer behind STRIPE_CALLS_PER_SECOND: send times evenly spaced, never a burst."""

from __future__ import annotations

import pytest

from investment_jobs.stripe.pacing import Pacer


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0  # float-ok: monotonic seconds
        self.slept: list[float] = []  # float-ok: seconds

    def __call__(self) -> float:  # float-ok: seconds
        return self.now

    def sleep(self, seconds: float) -> None:  # float-ok: seconds
        self.slept.append(round(seconds, 6))
        self.now += seconds


@pytest.mark.parametrize(("per_second", "calls", "expected_sleeps"), [
    (4, 4, [0.25, 0.25, 0.25]),  # the first call goes at once, the others a quarter second apart
    (25, 3, [0.04, 0.04]),
    (0.5, 2, [2.0]),  # float-ok: a rate below one per second
])
def test_calls_in_a_row_are_spaced_by_the_interval(per_second, calls, expected_sleeps) -> None:
    clock = FakeClock()
    pacer = Pacer(per_second, clock=clock, sleep=clock.sleep)
    for _ in range(calls):
        pacer.wait()
    assert clock.slept == expected_sleeps


def test_a_pause_is_not_saved_up_for_a_burst_later() -> None:
    clock = FakeClock()
    pacer = Pacer(10, clock=clock, sleep=clock.sleep)
    pacer.wait()
    clock.now += 5  # idle for five seconds: 50 calls' worth
    pacer.wait()
    pacer.wait()
    assert clock.slept == [0.1]  # the call after the pause goes at once, the next waits its interval


@pytest.mark.parametrize("per_second", [0, -1])
def test_a_pace_needs_a_positive_rate(per_second) -> None:
    with pytest.raises(ValueError, match="positive"):
        Pacer(per_second)
