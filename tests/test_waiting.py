"""``wait_until``: the one way tests wait (tests/waiting.py)."""

from __future__ import annotations

import itertools

import pytest

from tests.waiting import wait_until


def test_returns_the_first_truthy_value_of_the_condition() -> None:
    polls = itertools.count()
    assert wait_until(lambda: (n := next(polls)) >= 3 and n, what="three polls") == 3


def test_a_condition_never_met_fails_naming_what_it_waited_for() -> None:
    with pytest.raises(AssertionError, match="waiting for the impossible"):
        wait_until(lambda: False, what="the impossible", timeout_s=0)


def test_a_failing_check_inside_the_condition_fails_at_once() -> None:
    def check() -> bool:
        raise AssertionError("job failed")

    with pytest.raises(AssertionError, match="job failed"):
        wait_until(check, what="a job")
