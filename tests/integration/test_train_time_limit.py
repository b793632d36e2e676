"""``train_time_limit``: training episodes are cut after N steps, evaluation keeps the env's limit.

Why it exists (docs/benchmarks.md, InvertedDoublePendulum-v5): with 1,000-step episodes only one
state in a thousand is a start, and a policy can balance for ever yet fall from the harder starts.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from trustpg import TRPO, TrainConfig
from trustpg.config.train_config import validate
from trustpg.envs.source import EnvSource

ENV = "Pendulum-v1"  # never terminates: every episode ends at its time limit (200)


def _steps_to_truncation(vec: gym.vector.VectorEnv, cap: int = 400) -> list[int]:
    """Steps until each sub-env's first truncation, from a seeded reset."""
    vec.reset(seed=0)
    first = [0] * vec.num_envs
    rng = np.random.default_rng(0)
    for t in range(1, cap + 1):
        actions = rng.uniform(-1, 1, (vec.num_envs, *vec.single_action_space.shape)).astype(np.float32)
        _, _, term, trunc, _ = vec.step(actions)
        assert not term.any()
        for i in np.flatnonzero(trunc):
            first[i] = first[i] or t
        if all(first):
            return first
    return first


@pytest.mark.parametrize("vectorization", ["sync", "async"])
def test_training_envs_are_cut_and_the_evaluation_env_is_not(vectorization):
    source = EnvSource(ENV)
    vec = source.make_vec(2, vectorization, time_limit=7)
    try:
        assert _steps_to_truncation(vec) == [7, 7]
    finally:
        vec.close()
    one = source.make_one()
    assert one.spec is not None and one.spec.max_episode_steps == 200
    one.close()
    vec = source.make_vec(2, vectorization)  # unset: the env's own limit
    try:
        assert _steps_to_truncation(vec) == [200, 200]
    finally:
        vec.close()


def test_envs_given_as_a_factory_are_cut_too():
    vec = EnvSource(lambda: gym.make(ENV)).make_vec(3, "sync", time_limit=5)
    try:
        assert _steps_to_truncation(vec) == [5, 5, 5]
    finally:
        vec.close()


def test_envpool_envs_are_cut_too():
    pytest.importorskip("envpool")
    vec = EnvSource("Hopper-v5").make_vec(2, "envpool", time_limit=3)
    try:
        vec.reset(seed=0)
        zeros = np.zeros((2, 3), np.float32)
        truncs = [bool(vec.step(zeros)[3].all()) for _ in range(3)]
        assert truncs == [False, False, True]
    finally:
        vec.close()


def test_a_vector_env_passed_as_is_cannot_be_cut():
    vec = gym.make_vec(ENV, 2, vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP})
    source = EnvSource(vec)
    with pytest.raises(ValueError, match="train_time_limit=5 cannot apply to a vector env"):
        source.make_vec(2, "sync", time_limit=5)
    vec.close()


@pytest.mark.parametrize("bad", [0, -3])
def test_a_limit_below_one_step_is_refused_naming_the_field(bad):
    with pytest.raises(ValueError, match=r"train_time_limit=.* must be unset .* or >= 1"):
        validate(TrainConfig(env=ENV, train_time_limit=bad))


def test_a_run_trains_on_short_episodes_and_evaluates_on_full_ones(tmp_path):
    agent = TRPO(ENV, seed=0, num_envs=2, steps_per_env=100, train_time_limit=50, eval_episodes=2,
                 progress=False, tensorboard=False)  # fmt: skip
    rows: list[dict] = []
    agent.learn(400, callback=lambda r: rows.append(dict(r)) or True)
    lengths = {r["mean_length"] for r in rows if r["episodes"]}
    assert lengths == {50.0}  # every training episode was cut at 50 steps
    env = agent.trainer.env_source.make_one()
    obs, _ = env.reset(seed=0)
    steps, done = 0, False
    while not done:
        obs, _, term, trunc, _ = env.step(agent.predict(obs))
        steps, done = steps + 1, term or trunc
    assert steps == 200  # the evaluation env's episodes run to Pendulum's own limit
    agent.close()
