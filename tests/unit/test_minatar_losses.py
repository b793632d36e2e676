"""benchmarks/minatar_losses.py's chance of saving a ball against the game itself: every sequence
of no-op / left / right actions is played on copies of MinAtar Breakout, weighted by the policy's
probabilities, and the weight of the sequences that keep the ball is the ``p_save`` computed."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

pytest.importorskip("minatar")

from minatar.environments.breakout import Env

from benchmarks.minatar_losses import analyse_loss, p_save


def _policy(game: Any) -> np.ndarray:
    """A policy over the full action set that depends on the state (the paddle's column)."""
    if game.pos < 5:
        return np.array([0.2, 0.5, 0.0, 0.3, 0.0, 0.0])
    return np.array([0.55, 0.1, 0.0, 0.35, 0.0, 0.0])


def _kept(game: Env, moves: int) -> float:
    """Exact: the probability that ``_policy`` keeps the ball through ``moves`` steps of the game."""
    if moves == 0:
        return 1.0
    total = 0.0
    for a, pr in enumerate(_policy(game)):
        if pr > 0:
            ghost = copy.deepcopy(game)
            ghost.act(a)
            total += 0.0 if ghost.terminal else pr * _kept(ghost, moves - 1)
    return total


def _steps_to_arrive(game: Env) -> int:
    ghost = copy.deepcopy(game)
    ghost.pos, n = -5, 0
    while not ghost.terminal:
        ghost.act(0)
        n += 1
    return n


def _descents(n: int) -> list[tuple[Env, list[Env]]]:
    """States of random play with the ball 2-7 steps above the paddle's row, and the game before
    each of those steps (the ball's course, which the paddle does not change until it arrives)."""
    rng = np.random.default_rng(0)
    game, out = Env(), []
    game.random = np.random.RandomState(0)
    while len(out) < n:
        if game.terminal:
            game.reset()
        m = _steps_to_arrive(game)
        if 2 <= m <= 7 and rng.random() < 0.2:
            ghost, snaps = copy.deepcopy(game), []
            for _ in range(m):
                snaps.append(copy.deepcopy(ghost))
                ghost.act(0)
            out.append((game, snaps))
        game = copy.deepcopy(game)
        game.act(int(rng.choice([0, 1, 3])))
    return out


def test_p_save_equals_the_weight_of_the_action_sequences_that_keep_the_ball():
    chances = set()
    for game, snaps in _descents(25):
        exact = _kept(game, len(snaps))  # the ball arrives on the last step
        assert p_save(snaps, int(game.pos), _policy) == pytest.approx(exact, abs=1e-12)
        chances.add(round(exact, 3))
    assert len(chances) > 5 and 0.0 in chances  # losses, and chances in between: not one case


def test_a_ball_is_reachable_exactly_when_some_actions_save_it():
    seen = set()
    for _game, snaps in _descents(40):
        loss = analyse_loss(snaps, _policy)
        assert 1 <= loss["moves_left"] <= len(snaps)
        assert loss["reachable"] == (loss["p_save_uniform"] > 0.0)
        seen.add(loss["reachable"])
    assert seen == {True, False}
