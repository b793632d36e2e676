"""benchmarks/start_falls.py counts the starts a policy falls from, within a step budget."""

from __future__ import annotations

import sys
from pathlib import Path

import gymnasium as gym
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import start_falls


class _Push:
    """A policy that always pushes the cart right: CartPole's pole falls in ~10 steps."""

    def predict(self, obs: np.ndarray) -> int:
        return 1


def test_a_policy_that_always_falls_falls_from_every_start_and_not_within_a_shorter_budget():
    env = gym.make("CartPole-v1")
    assert start_falls.falls(_Push(), env, starts=5, steps=200) == [True] * 5  # type: ignore[arg-type]
    assert start_falls.falls(_Push(), env, starts=5, steps=3) == [False] * 5  # type: ignore[arg-type]
    total, terminated = start_falls.episode(_Push(), env, seed=0)  # type: ignore[arg-type]
    assert terminated and 3 < total < 30  # CartPole pays 1 per step survived
    env.close()


def test_fall_rates_are_split_by_starting_tilt():
    fell = np.array([[True, False, False, True], [True, True, False, False]])
    tilt = np.array([0.01, 0.02, 0.07, 0.2])
    lines = start_falls.by_tilt(fell, tilt)
    assert lines[2] == "| [0.0, 0.05) | 2 | 0.750 |"  # 3 of the 4 (run, start) pairs fell
    assert lines[3] == "| [0.05, 0.1) | 1 | 0.000 |"
    assert lines[5] == "| [0.15, 0.25) | 1 | 0.500 |"


class _Still:
    """Pendulum with no torque: the episode never terminates and every reward is negative."""

    def predict(self, obs: np.ndarray) -> np.ndarray:
        return np.zeros(1, dtype=np.float32)


def test_a_start_that_does_not_fall_but_returns_little_is_a_stall_and_a_fall_is_not():
    pendulum = gym.make("Pendulum-v1")
    fell, stalled = start_falls.falls_and_stalls(_Still(), pendulum, starts=3, steps=200, below=0.0)  # type: ignore[arg-type]
    assert fell == [False] * 3 and stalled == [True] * 3  # every Pendulum return is < 0
    fell, stalled = start_falls.falls_and_stalls(_Still(), pendulum, starts=3, steps=200, below=-1e9)  # type: ignore[arg-type]
    assert stalled == [False] * 3
    total, end = start_falls.play(_Still(), pendulum, seed=0)  # type: ignore[arg-type]
    assert end is None and total < 0  # played to the time limit (200 steps)
    pendulum.close()
    cartpole = gym.make("CartPole-v1")
    fell, stalled = start_falls.falls_and_stalls(_Push(), cartpole, starts=3, steps=200, below=1e9)  # type: ignore[arg-type]
    assert fell == [True] * 3 and stalled == [False] * 3  # a fall is counted once, as a fall
    assert fell == start_falls.falls(_Push(), cartpole, starts=3, steps=200)  # type: ignore[arg-type]
    fell, _ = start_falls.falls_and_stalls(_Push(), cartpole, starts=3, steps=3, below=1e9)  # type: ignore[arg-type]
    assert fell == [False] * 3  # terminated, but after the step budget
    cartpole.close()
