"""EnvPool adapter (trustpg.envs.envpool_backend): Gymnasium same-step autoreset on top of EnvPool.

Skipped when EnvPool is not installed (it is an optional extra: pip install 'trustpg[envpool]').
"""

from __future__ import annotations

import sys

import gymnasium as gym
import numpy as np
import pytest

from trustpg.config.train_config import TrainConfig
from trustpg.envs.source import EnvSource

ENV = "Hopper-v5"


@pytest.fixture
def envpool():
    return pytest.importorskip("envpool")


def _adapter(num_envs=3, **kwargs):
    from trustpg.envs.envpool_backend import EnvPoolVectorEnv

    return EnvPoolVectorEnv(ENV, num_envs, **kwargs)


def _raw(envpool, num_envs=3, seed=0):
    return envpool.make(ENV, env_type="gymnasium", num_envs=num_envs, seed=seed, num_threads=2)


def _actions(steps, num_envs=3, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.uniform(-1, 1, (num_envs, 3)).astype(np.float32) for _ in range(steps)]


def _first_end(envpool, actions, num_envs=3):
    """(step, env) of the first episode end of raw EnvPool under ``actions`` (seed 0)."""
    raw = _raw(envpool, num_envs)
    raw.reset()
    for t, a in enumerate(actions):
        _, _, te, tr, _ = raw.step(a.astype(np.float64))
        if (te | tr).any():
            return t, int(np.flatnonzero(te | tr)[0])
    raise AssertionError("no episode ended")


def test_spaces_and_dtypes_are_gymnasiums(envpool):
    env = _adapter()
    probe = gym.make(ENV)
    assert env.single_observation_space == probe.observation_space
    assert env.single_action_space == probe.action_space  # float32 Box, as Gymnasium's
    assert env.metadata["autoreset_mode"] == gym.vector.AutoresetMode.SAME_STEP
    assert env.max_episode_steps == 1000
    obs, _ = env.reset(seed=0)
    assert obs.shape == (3, 11) and obs.dtype == np.float64
    obs, rew, te, tr, _ = env.step(env.action_space.sample())
    assert obs.shape == (3, 11) and obs.dtype == np.float64
    assert rew.shape == (3,) and rew.dtype == np.float64
    assert te.dtype == bool and tr.dtype == bool
    env.close()
    assert env.closed


def test_same_step_reset_gives_what_envpool_gives_one_step_later(envpool):
    """At an episode end the adapter returns EnvPool's reset observation in the same step and the
    terminal observation in final_obs, with Gymnasium's masks; the other envs are untouched."""
    actions = _actions(200)
    end, i = _first_end(envpool, actions)
    env, raw = _adapter(), _raw(envpool)
    obs, _ = env.reset(seed=0)
    raw_obs, _ = raw.reset()
    np.testing.assert_array_equal(obs, raw_obs)
    for t in range(end + 1):
        obs, rew, te, tr, info = env.step(actions[t])
        raw_obs, raw_rew, raw_te, _, _ = raw.step(actions[t].astype(np.float64))
        np.testing.assert_array_equal(rew, raw_rew)
        np.testing.assert_array_equal(te, raw_te)
        if t < end:
            np.testing.assert_array_equal(obs, raw_obs)
            assert "final_obs" not in info
    done = te | tr
    assert done[i] and done.sum() == 1
    np.testing.assert_array_equal(info["_final_obs"], done)
    np.testing.assert_array_equal(info["_final_info"], done)
    np.testing.assert_array_equal(info["final_obs"][i], raw_obs[i])
    assert all(info["final_obs"][k] is None for k in range(3) if k != i)
    others = [k for k in range(3) if k != i]
    np.testing.assert_array_equal(obs[others], raw_obs[others])
    next_raw, raw_rew, *_ = raw.step(np.zeros((3, 3)))  # EnvPool resets env i only now
    assert raw_rew[i] == 0.0
    np.testing.assert_array_equal(obs[i], next_raw[i])
    # the adapter's env i really restarted: its next step is the first of a new episode
    obs, rew, te, tr, info = env.step(np.zeros((3, 3), np.float32))
    assert not (te | tr).any() and rew[i] != 0.0


def test_time_limit_truncates_and_restarts_the_counter(envpool):
    env = _adapter(env_kwargs={"max_episode_steps": 5})
    env.reset(seed=1)
    zero = np.zeros((3, 3), np.float32)  # Hopper stands for more than 5 steps
    for _ in range(2):
        for t in range(5):
            obs, _, te, tr, info = env.step(zero)
            assert not te.any()
            assert tr.all() == (t == 4)
        assert all(f is not None for f in info["final_obs"]) and info["_final_obs"].all()
        assert np.abs(obs[:, 1:] - 0.0).max() <= 0.005  # reset observations (noise scale 0.005)


def test_termination_on_the_last_step_is_terminated_and_truncated(envpool):
    """Gymnasium's TimeLimit reports both; EnvPool alone would report truncated only."""
    actions = _actions(200)
    end, i = _first_end(envpool, actions)
    env = _adapter(env_kwargs={"max_episode_steps": end + 1})
    env.reset(seed=0)
    for t in range(end + 1):
        _, _, te, tr, _ = env.step(actions[t])
    assert te[i] and tr[i]
    assert tr.all() and te.sum() == 1


def test_seeding(envpool):
    def run(env, seed, steps=60):
        obs, _ = env.reset(seed=seed)
        out = [obs]
        for a in _actions(steps):
            out.append(env.step(a)[0])
        return np.stack(out)

    env = _adapter()
    a, b = run(env, 3), run(env, 3)
    np.testing.assert_array_equal(a, b)  # includes episode ends and resets
    assert not np.array_equal(a, run(env, 4))
    # env i is seeded with seed + i, as in Gymnasium's vector envs
    one = _adapter(num_envs=1)
    np.testing.assert_array_equal(one.reset(seed=5)[0][0], env.reset(seed=4)[0][1])
    np.testing.assert_array_equal(env.reset(seed=[7, 8, 9])[0], env.reset(seed=7)[0])
    np.testing.assert_array_equal(env.reset(seed=np.int64(7))[0], env.reset(seed=7)[0])
    with pytest.raises(ValueError, match="seeds"):
        env.reset(seed=-1)


def test_trustpg_builds_it_from_the_config(envpool):
    env = EnvSource(ENV).make_vec(2, TrainConfig(vectorization="envpool").vectorization)
    assert type(env).__name__ == "EnvPoolVectorEnv" and env.num_envs == 2
    env.close()
    with pytest.raises(ValueError, match="vectorization='envpool' needs a registered env id"):
        EnvSource(lambda: gym.make(ENV)).make_vec(2, "envpool")


def test_clear_errors(envpool):
    from trustpg.envs.envpool_backend import EnvPoolVectorEnv

    with pytest.raises(ValueError, match="EnvPool has no environment 'Taxi-v4'"):
        EnvPoolVectorEnv("Taxi-v4", 2)
    with pytest.raises(ValueError, match=r"env_kwargs \['not_a_param'\]"):
        EnvPoolVectorEnv(ENV, 2, {"not_a_param": 1})


def test_missing_envpool_names_the_extra(monkeypatch):
    from trustpg.envs.envpool_backend import import_envpool
    from trustpg.errors import MissingExtra

    monkeypatch.setitem(sys.modules, "envpool", None)  # import envpool -> ImportError
    with pytest.raises(MissingExtra, match=r"pip install 'trustpg\[envpool\]'"):
        import_envpool()


def test_config_accepts_envpool():
    assert TrainConfig(vectorization="envpool").vectorization == "envpool"
    with pytest.raises(ValueError, match="sync, async, envpool"):
        TrainConfig(vectorization="threads")


def test_cli_fails_before_making_the_run_directory_without_envpool(monkeypatch, tmp_path, capsys):
    from trustpg.app.cli import main

    monkeypatch.setitem(sys.modules, "envpool", None)
    args = ["train", "--env", ENV, "--vectorization", "envpool", "--steps", "64", "--num-envs", "2",
            "--steps-per-env", "32", "--run-dir", str(tmp_path / "runs"), "--no-progress"]  # fmt: skip
    assert main(args) == 2
    assert "pip install 'trustpg[envpool]'" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
