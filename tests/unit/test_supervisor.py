"""The supervisor's respawn policy, as pure logic: back-off, its reset, and when to give up."""

from __future__ import annotations

from sessionmemory_server.supervisor import (
    GIVE_UP_AFTER,
    MAX_DELAY_SECONDS,
    STABLE_AFTER_SECONDS,
    Restarts,
    should_give_up,
)


def test_the_delay_doubles_from_half_a_second_up_to_thirty() -> None:
    r = Restarts()
    delays = [r.exited(uptime=1.0, served=True) for _ in range(10)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0]
    assert MAX_DELAY_SECONDS == 30.0


def test_a_worker_that_stayed_up_resets_the_delay() -> None:
    r = Restarts()
    for _ in range(5):
        r.exited(uptime=1.0, served=True)
    assert r.exited(uptime=STABLE_AFTER_SECONDS - 1, served=True) == 16.0
    assert r.exited(uptime=STABLE_AFTER_SECONDS, served=True) == 0.5
    assert r.exited(uptime=1.0, served=True) == 1.0


def test_a_crash_loop_stays_bounded_however_long_it_lasts() -> None:
    r = Restarts()
    delays = [r.exited(uptime=0.1, served=False) for _ in range(10_000)]
    assert max(delays) == 30.0 and delays[-1] == 30.0


def test_start_failures_count_in_a_row_and_reset_once_a_worker_served() -> None:
    r = Restarts()
    r.exited(uptime=0.1, served=False)
    r.exited(uptime=0.1, served=False)
    assert r.start_failures == 2
    r.exited(uptime=5.0, served=True)
    assert r.start_failures == 0


def test_give_up_only_when_every_worker_failed_to_start_enough_times() -> None:
    def failed(times: int) -> Restarts:
        r = Restarts()
        for _ in range(times):
            r.exited(uptime=0.1, served=False)
        return r

    assert GIVE_UP_AFTER == 3
    assert should_give_up([failed(3), failed(3)])
    assert should_give_up([failed(4)])
    assert not should_give_up([failed(3), failed(2)])  # one worker may still come up
    serving = failed(3)
    serving.exited(uptime=10.0, served=True)
    assert not should_give_up([failed(3), serving])
    assert not should_give_up([])
