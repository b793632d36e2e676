"""benchmarks/minatar_scripted.py's landing prediction against the game itself: from states of
random play, a copy of the game with the paddle out of reach plays on until the ball is lost,
and the column where it falls is the one predicted."""

from __future__ import annotations

import copy

import numpy as np
import pytest

pytest.importorskip("minatar")

from minatar.environments.breakout import Env

from benchmarks.minatar_scripted import landing_column


def _falls_at(game: Env) -> int:
    ghost = copy.deepcopy(game)
    ghost.pos = -5  # no column: the ball passes the paddle's row where it arrives
    while not ghost.terminal:
        ghost.act(0)
    return int(ghost.ball_x)


def test_the_predicted_landing_column_is_where_the_game_drops_the_ball():
    rng = np.random.default_rng(0)
    game = Env()
    game.random = np.random.RandomState(0)
    for _ in range(3000):
        if game.terminal:
            game.reset()
        assert landing_column(game) == _falls_at(game)
        game.act(int(rng.choice([0, 1, 3])))
