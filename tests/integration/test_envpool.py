"""Training with vectorization="envpool" through the public API (skipped without EnvPool)."""

from __future__ import annotations

import math

import pytest
import torch

from trustpg import TRPO
from trustpg.core.linalg import flat_params

pytest.importorskip("envpool")


def _run(seed: int):
    agent = TRPO("Hopper-v5", seed=seed, vectorization="envpool", num_envs=4, steps_per_env=256,
                 normalize_reward=True, eval_episodes=0, tensorboard=False)  # fmt: skip
    rows = []
    agent.learn(3072, callback=rows.append, progress=False)
    return agent, rows


def test_trpo_trains_on_hopper_with_envpool():
    agent, rows = _run(0)
    assert agent.num_timesteps == 3072 and len(rows) == 3
    assert rows[-1]["episodes"] > 0  # random Hopper episodes end within ~20-100 steps
    assert all(math.isfinite(r["mean_return"]) for r in rows if r["episodes"])
    assert any(not r["skipped"] for r in rows)
    mean, _, _ = agent.evaluate(1)  # evaluation uses Gymnasium's own Hopper-v5
    assert math.isfinite(mean)
    again, rows_again = _run(0)
    assert [r["mean_return"] for r in rows] == [r["mean_return"] for r in rows_again]
    assert torch.equal(flat_params(agent.policy), flat_params(again.policy))
    agent.close()
    again.close()


def test_resume_with_envpool_restarts_episodes_and_warns(tmp_path, caplog):
    from trustpg import Agent

    agent = TRPO("Hopper-v5", seed=0, vectorization="envpool", num_envs=2, steps_per_env=128,
                 eval_episodes=0, tensorboard=False)  # fmt: skip
    agent.learn(256, run_dir=tmp_path, progress=False)
    agent.close()
    resumed = Agent.load(tmp_path / "checkpoints" / "last")
    assert resumed.config.vectorization == "envpool"
    resumed.learn(256, progress=False)
    assert "will not match an uninterrupted one exactly" in caplog.text
    assert "EnvPoolVectorEnv" in caplog.text
    assert resumed.num_timesteps == 512
    resumed.close()
