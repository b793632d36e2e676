"""Every curvature back end trains TRPO and resumes bit-exactly (K-FAC's running factors and its
sampled-action seed travel in the checkpoint)."""

from __future__ import annotations

import math

import pytest
import torch

from trustpg import TRPO, Agent
from trustpg.core.linalg import flat_params
from trustpg.io.checkpoint import load_checkpoint

TIMING = ("wall_time", "steps_per_sec")
SMALL = dict(num_envs=2, steps_per_env=64, progress=False, tensorboard=False, eval_episodes=0)
CASES = [
    ("CartPole-v1", "kfac", "mean"),
    ("CartPole-v1", "diagonal", "max"),
    ("CartPole-v1", "empirical", "reverse"),
    ("CartPole-v1", "cg", "max"),
    ("Pendulum-v1", "kfac", "mean"),
    ("Pendulum-v1", "kfac-cg", "max"),
]


def _strip(rows: list) -> list[dict]:
    return [
        {
            k: ("nan" if v != v else v)
            for k, v in dict(r).items()
            if k not in TIMING and not k.endswith("seconds")
        }
        for r in rows
    ]


@pytest.mark.parametrize("env, curvature, kl", CASES, ids=[f"{e}-{c}-{k}" for e, c, k in CASES])
def test_each_back_end_trains_and_resumes_bit_exactly(tmp_path, env, curvature, kl):
    steps = 8 * 128
    cfg = dict(seed=0, curvature=curvature, kl=kl, ng_angle_states=64, **SMALL)
    whole = TRPO(env, **cfg)
    rows_whole: list = []
    whole.learn(steps, callback=rows_whole.append)

    first = TRPO(env, **cfg)
    rows: list = []
    first.learn(steps // 2, callback=rows.append, run_dir=tmp_path)
    first.close()
    _, meta = load_checkpoint(tmp_path / "checkpoints" / "last")
    assert ("pg_opt" in meta) == curvature.startswith("kfac")  # K-FAC's factors are state
    second = Agent.load(tmp_path / "checkpoints" / "last")
    second.learn(steps // 2, callback=rows.append)

    assert _strip(rows) == _strip(rows_whole)
    assert torch.equal(flat_params(second.policy), flat_params(whole.policy))
    taken = [dict(r) for r in rows_whole if not r["skipped"]]
    assert taken, "no update was taken"
    for r in taken:
        assert r["solve_seconds"] > 0
        assert (curvature == "cg") == math.isnan(r["ng_angle"])
        assert {"mean": r["measured_kl"], "max": r["kl_max"], "reverse": r["kl_reverse"]}[kl] <= 0.01
