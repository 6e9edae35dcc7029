"""poll_until: the one deadline loop (look, pause, look again), on real time with short deadlines."""

from __future__ import annotations

import time

import pytest

from dev_sessions.poll import poll_until


class Looks:
    """A predicate that answers from a script (None once it runs out) and notes when it was asked."""

    def __init__(self, *answers: object) -> None:
        self.answers = list(answers)
        self.times: list[float] = []

    def __call__(self) -> object:
        self.times.append(time.monotonic())
        return self.answers.pop(0) if self.answers else None


def test_the_first_truthy_value_is_returned_at_once() -> None:
    looks = Looks(None, 0, "", "found", "later")
    assert poll_until(looks, 5.0, 0.001) == "found"
    assert len(looks.times) == 4


def test_nothing_found_is_none_after_one_look_at_or_past_the_deadline() -> None:
    looks = Looks()
    started = time.monotonic()
    assert poll_until(looks, 0.05, 0.01) is None
    assert looks.times[-1] >= started + 0.05  # the look after the last pause
    assert looks.times[-2] < started + 0.05
    assert time.monotonic() - started < 0.05 + 0.5  # no more than one pause past it (with slack)


def test_a_zero_timeout_looks_exactly_once() -> None:
    looks = Looks()
    assert poll_until(looks, 0, 10.0) is None
    assert len(looks.times) == 1


def test_wait_first_pauses_before_the_first_look() -> None:
    pauses: list[float] = []
    looks = Looks("found")
    assert poll_until(looks, 1.0, 0.02, wait_first=True, sleep=pauses.append) == "found"
    assert pauses == [0.02]
    assert poll_until(Looks("found"), 1.0, 0.02, sleep=pauses.append) == "found"
    assert pauses == [0.02]  # without it, the first look comes at once


def test_the_pauses_go_through_the_given_sleep() -> None:
    pauses: list[float] = []

    def sleep(seconds: float) -> None:
        pauses.append(seconds)
        time.sleep(seconds)

    assert poll_until(Looks(None, None, True), 5.0, 0.003, sleep=sleep) is True
    assert pauses == [0.003, 0.003]


def test_what_the_predicate_raises_goes_through() -> None:
    def broken() -> None:
        raise LookupError("gone")

    with pytest.raises(LookupError, match="gone"):
        poll_until(broken, 5.0, 0.001)
