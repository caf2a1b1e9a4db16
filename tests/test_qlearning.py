"""BlockQNN's tabular Q-learning against hand-computed values: the update (shaped and not), the epsilon schedules,
epsilon-greedy choices over the valid actions."""

from __future__ import annotations

import numpy as np
import pytest

from agents.qlearning import (
    PAPER_SCHEDULE,
    START,
    QTable,
    epsilon_at,
    q_update,
    scaled_schedule,
    trajectory_states,
)
from nat_gym.blocks import num_actions
from nat_gym.errors import ConfigError

# conv3(0), conv3(1), terminal: states START, (1, 1, 3, 0, 0), (2, 1, 3, 1, 0); T = 3 transitions
ACTIONS = [2, 10, 0]
S1, S2 = (1, 1, 3, 0, 0), (2, 1, 3, 1, 0)


def test_trajectory_states():
    assert trajectory_states(ACTIONS) == [START, S1, S2]
    assert trajectory_states([2, 10]) == [START, S1, S2]  # ended by the index cap
    with pytest.raises(ConfigError, match="terminal"):
        trajectory_states([0, 2])


def test_update_with_shaping_hand_computed():
    q = QTable(0.5)
    q_update(q, ACTIONS, 0.9, lr=0.5, discount=1.0, shaping=True)
    # Q(s2, T) = 0.5 * 0.5 + 0.5 * 0.9                         = 0.7
    # Q(s1, a) = 0.5 * 0.5 + 0.5 * (0.9 / 3 + max Q(s2, .) = 0.7)  = 0.75
    # Q(s0, a) = 0.5 * 0.5 + 0.5 * (0.3 + max Q(s1, .) = 0.75)     = 0.775
    assert q.get(S2, 0) == pytest.approx(0.7)
    assert q.get(S1, 10) == pytest.approx(0.75)
    assert q.get(START, 2) == pytest.approx(0.775)
    assert len(q) == 3 and q.get(START, 1) == 0.5  # untouched pairs keep the initial value


def test_update_without_shaping_and_with_discount():
    q = QTable(0.5)
    q_update(q, ACTIONS, 0.9, lr=0.5, discount=1.0, shaping=False)
    assert (q.get(S2, 0), q.get(S1, 10), q.get(START, 2)) == pytest.approx((0.7, 0.6, 0.55))
    q = QTable(0.5)
    q_update(q, ACTIONS, 0.9, lr=0.5, discount=0.5, shaping=True)
    # Q(s1, a) = 0.25 + 0.5 * (0.3 + 0.5 * 0.7) = 0.575; Q(s0, a) = 0.25 + 0.5 * (0.3 + 0.5 * 0.575) = 0.54375
    assert (q.get(S1, 10), q.get(START, 2)) == pytest.approx((0.575, 0.54375))


def test_update_with_the_papers_settings():
    q = QTable(0.5)
    q_update(q, ACTIONS, 0.9)  # lr 0.01, discount 1, shaping
    assert q.get(S2, 0) == pytest.approx(0.504)
    assert q.get(S1, 10) == pytest.approx(0.495 + 0.01 * (0.3 + 0.504))
    assert q.get(START, 2) == pytest.approx(0.495 + 0.01 * (0.3 + 0.50304))


def test_max_covers_the_valid_actions_only():
    q = QTable(0.5)
    q.set(START, 3, 0.2)
    assert q.max(START, 9) == 0.5  # unvisited valid actions are worth 0.5
    for a in range(9):
        q.set(START, a, 0.1 * a)
    assert q.max(START, 9) == pytest.approx(0.8)
    q.set(START, 40, 5.0)  # an action that is not valid there is never the max
    assert q.max(START, 9) == pytest.approx(0.8)


def test_epsilon_greedy_choices():
    rng = np.random.default_rng(0)
    q = QTable(0.5)
    q.set(START, 4, 0.9)
    assert {q.act(START, 9, 0.0, rng) for _ in range(50)} == {4}
    q.set(START, 4, 0.1)  # now eight actions tie at 0.5: uniform among them
    assert {q.act(START, 9, 0.0, rng) for _ in range(400)} == set(range(9)) - {4}
    n = num_actions(3)
    draws = [q.act(START, n, 1.0, rng) for _ in range(4000)]
    assert min(draws) == 0 and max(draws) == n - 1 and len(set(draws)) == n


def test_paper_schedule():
    assert sum(n for _, n in PAPER_SCHEDULE) == 178 and 64 * 178 == 11_392
    expected = {0: 1.0, 94: 1.0, 95: 0.9, 101: 0.9, 102: 0.8, 109: 0.7, 116: 0.6, 126: 0.5, 165: 0.2, 166: 0.1,
                177: 0.1, 500: 0.1}  # fmt: skip
    for iteration, eps in expected.items():
        assert epsilon_at(PAPER_SCHEDULE, iteration) == eps


def test_scaled_schedule_hand_computed():
    # quotas 95 * 24 / 178 = 12.81, 7 * 24 / 178 = 0.94 (raised to 1), 10 * 24 / 178 = 1.35, 12 * 24 / 178 = 1.62:
    # floors 12 + 3 + 5 + 1 = 21; the 3 left go to the largest remainders: 0.81 (1.0), 0.62 (0.1), 0.35 (0.6 first)
    assert scaled_schedule(24) == ((1.0, 13), (0.9, 1), (0.8, 1), (0.7, 1), (0.6, 2), (0.5, 1), (0.4, 1), (0.3, 1),
                                   (0.2, 1), (0.1, 2))  # fmt: skip
    assert scaled_schedule(178) == PAPER_SCHEDULE
    assert scaled_schedule(10) == tuple((eps, 1) for eps, _ in PAPER_SCHEDULE)
    for n in (10, 11, 24, 33, 57, 178, 400):
        assert sum(c for _, c in scaled_schedule(n)) == n
    with pytest.raises(ConfigError, match="iterations"):
        scaled_schedule(9)
