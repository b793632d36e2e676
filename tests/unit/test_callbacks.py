"""trustpg.train.callbacks on hand-made metric rows (no env)."""

from __future__ import annotations

import math

import pytest

from trustpg.train.callbacks import CallbackList, EveryN, History, StopOnReturn


def _row(update: int, ret: float) -> dict:
    return {"update": update, "env_steps": 100 * update, "mean_return": ret}


def test_stop_on_return_averages_a_window_and_skips_nan():
    stop = StopOnReturn(10.0, window=2)
    assert stop(_row(1, 12.0)) is True  # window not full yet
    assert stop(_row(2, math.nan)) is True  # no finished episode: not counted
    assert stop(_row(3, 7.0)) is True  # mean(12, 7) = 9.5 < 10
    assert stop.stopped_at is None
    assert stop(_row(4, 13.0)) is False  # mean(7, 13) = 10
    assert stop.stopped_at == 400
    with pytest.raises(ValueError):
        StopOnReturn(1.0, window=0)


def test_every_n_calls_on_multiples_and_passes_stop_through():
    seen = []
    cb = EveryN(3, lambda row: seen.append(row["update"]) or row["update"] < 6)
    results = [cb(_row(u, 0.0)) for u in range(1, 8)]
    assert seen == [3, 6]
    assert results == [None, None, True, None, None, False, None]
    with pytest.raises(ValueError):
        EveryN(0, print)


def test_callback_list_runs_all_and_stops_if_any_says_false():
    history = History()
    cb = CallbackList([lambda row: False, history])
    assert cb(_row(1, 5.0)) is False
    assert history.column("mean_return") == [5.0]  # still ran after the stopping callback
    assert CallbackList([history, lambda row: None])(_row(2, 6.0)) is True
