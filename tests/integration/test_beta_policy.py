"""The Beta policy for Box actions end to end (issue 21 item 4): chosen by ``action_dist``/
``--action-dist``, its actions inside the box, the fast sampler's fallback announced, checkpoints,
bit-exact resume, and learning Pendulum-v1 over seeds 0-2."""

from __future__ import annotations

import json
import logging

import gymnasium as gym
import numpy as np
import pytest
import torch
from _learning import median, summary, train_seeds

from trustpg import TRPO, Agent
from trustpg.accel import fallback
from trustpg.app.cli import main
from trustpg.config.presets import preset_overrides
from trustpg.core.beta import Beta
from trustpg.core.linalg import flat_params
from trustpg.nets.policies import make_actor

SMALL = dict(num_envs=2, steps_per_env=64, progress=False, tensorboard=False, eval_episodes=0)


def _strip(rows: list[dict]) -> list[dict]:
    """Rows without the timing columns (seconds, *_seconds, wall_time, steps_per_sec)."""
    timing = ("seconds", "wall_time", "steps_per_sec")
    return [{k: ("nan" if v != v else v) for k, v in r.items() if not k.endswith(timing)} for r in rows]


def test_beta_actor_samples_inside_the_box_with_the_numpy_sampler(caplog):
    fallback.reset()
    agent = TRPO("Pendulum-v1", seed=0, action_dist="beta", **SMALL)
    assert isinstance(agent.policy(torch.zeros(1, 3)), Beta)
    assert "log_std" not in dict(agent.policy.named_parameters())
    with caplog.at_level(logging.INFO, logger="trustpg"):
        agent.learn(256)
    assert not [r for r in caplog.records if "sampler off" in r.getMessage()]
    t = agent.trainer
    batch = t._ensure_collector().collect(t.actor, t.critic, 64)
    assert (batch.actions.abs() < 2.0).all()  # sampled inside the box: clipping changes nothing
    obs = np.random.default_rng(0).normal(size=(500, 3))
    for deterministic in (True, False):
        a = agent.predict(obs, deterministic=deterministic)
        assert a.shape == (500, 1) and (np.abs(a) < 2.0).all()
    agent.close()


def test_beta_needs_a_bounded_box():
    space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    obs = gym.spaces.Box(-1, 1, (3,), np.float32)
    with pytest.raises(ValueError, match="bounded"):
        make_actor(obs, space, (8,), "tanh", 0.0, "beta")
    with pytest.raises(ValueError, match="Box actions"):
        make_actor(obs, gym.spaces.Discrete(3), (8,), "tanh", 0.0, "beta")
    with pytest.raises(ValueError, match="action_dist"):
        TRPO("Pendulum-v1", action_dist="cauchy")


def test_beta_resume_is_bit_exact(tmp_path):
    steps = 8 * 128
    whole = TRPO("Pendulum-v1", seed=0, action_dist="beta", **SMALL)
    rows_whole: list = []
    whole.learn(steps, callback=rows_whole.append)

    first = TRPO("Pendulum-v1", seed=0, action_dist="beta", **SMALL)
    rows: list = []
    first.learn(steps // 2, callback=rows.append, run_dir=tmp_path)
    first.close()
    second = Agent.load(tmp_path / "checkpoints" / "last")
    assert second.config.action_dist == "beta"
    second.learn(steps // 2, callback=rows.append)

    assert _strip(rows) == _strip(rows_whole)
    assert torch.equal(flat_params(second.policy), flat_params(whole.policy))
    ta, tb = second.trainer.state()[0], whole.trainer.state()[0]
    assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
    whole.close()
    second.close()


def test_cli_action_dist_beta_trains_saves_and_evaluates(tmp_path, capsys):
    rc = main(["train", "--env", "Pendulum-v1", "--action-dist", "beta", "--steps", "1024",
               "--num-envs", "2", "--steps-per-env", "256", "--run-dir", str(tmp_path),
               "--run-name", "b", "--eval-episodes", "1", "--no-progress"])  # fmt: skip
    assert rc == 0
    run = tmp_path / "b"
    assert json.loads((run / "config.json").read_text())["action_dist"] == "beta"
    agent = TRPO.load(run / "checkpoints" / "last.safetensors")
    assert isinstance(agent.policy(torch.zeros(1, 3)), Beta)
    capsys.readouterr()
    assert main(["eval", str(run), "--episodes", "1"]) == 0


@pytest.mark.slow
def test_trpo_beta_pendulum_within_250k_steps():
    # Measured at b581d6d, seeds 0-9, the Pendulum preset: final evaluations -245 to -128 (median
    # -154; untrained -1,169 to -1,021), training return of the last 10 updates -370 to -174 (one
    # seed below -300). The Gaussian's seeds 0-9 end at -182 to -128 (test_learning.py). Median of
    # seeds 0-2 against the Gaussian test's bar, -250, which every measured seed clears.
    runs = train_seeds(
        lambda seed: TRPO(
            "Pendulum-v1", seed=seed, action_dist="beta", **preset_overrides("classic", "Pendulum-v1")
        ),
        250_000,
    )
    assert median(r.final for r in runs) >= -250, summary(runs)
    assert median(r.late_return for r in runs) >= -300, summary(runs)
    assert all(row["measured_kl"] <= 0.01 + 1e-9 for r in runs for row in r.rows if not row["skipped"])
