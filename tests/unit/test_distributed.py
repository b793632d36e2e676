"""Issue 7 without a Ray cluster: moment merging, the worker/learner split, the missing-extra message."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from torch import nn

from trustpg.config.train_config import TrainConfig
from trustpg.core.distributions import Categorical
from trustpg.core.moments import Moments, RunningMeanStd, combine, combine_all
from trustpg.envs.source import EnvSource
from trustpg.errors import MissingExtra
from trustpg.nets.policies import Critic
from trustpg.sampling.distributed import RolloutWorker, import_ray, merge
from trustpg.sampling.rollout import Collector


def test_combined_moments_are_the_moments_of_the_union():
    rng = np.random.default_rng(0)
    parts = [rng.normal(3.0, 2.0, size=(n, 3)) * [1, 10, 0.1] for n in (1, 7, 50, 2)]
    m = combine_all([Moments.of(p, (3,)) for p in parts])
    union = np.concatenate(parts)
    assert m.count == len(union)
    np.testing.assert_allclose(m.mean, union.mean(0), rtol=1e-12)
    np.testing.assert_allclose(m.var, union.var(0), rtol=1e-12)
    empty = Moments(0.0, np.zeros(3), np.ones(3))
    assert combine(empty, m) is m and combine(m, empty) is m


def test_learner_update_from_moments_equals_update_on_the_union():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(40, 2)), rng.normal(5.0, 3.0, size=(24, 2))
    reference, merged = RunningMeanStd((2,)), RunningMeanStd((2,))
    reference.update(rng.normal(size=(10, 2)))
    merged.load_state_dict(reference.state_dict())
    reference.update(np.concatenate([a, b]))
    m = combine(Moments.of(a, (2,)), Moments.of(b, (2,)))
    merged.update_from_moments(m.count, m.mean, m.var)
    np.testing.assert_allclose(merged.mean, reference.mean, rtol=1e-12)
    np.testing.assert_allclose(merged.var, reference.var, rtol=1e-12)
    assert merged.count == reference.count


class PushByAngle(nn.Module):
    """A deterministic CartPole controller: sampling ignores the generator, so the workers'
    different action streams cannot make their envs diverge from the in-process ones."""

    def forward(self, obs: torch.Tensor) -> Categorical:
        right = (obs[:, 2] + 0.5 * obs[:, 3] > 0).float()
        return Categorical(logits=1000.0 * torch.stack([1 - right, right], -1))


def test_two_workers_merged_equal_the_in_process_collector_on_all_their_envs():
    c = TrainConfig(num_envs=4, workers=2, normalize_reward=True, seed=3)
    actor, critic = PushByAngle(), Critic(4, (16,), "tanh")
    state = torch.Generator().manual_seed(0).get_state()
    workers = [RolloutWorker(c, actor, critic, c.seed + 2 * i, state) for i in range(2)]
    env = EnvSource(c.env).make_vec(4)
    ref = Collector(env, c.seed, True, c.obs_clip, True, c.gamma)
    obs_rms, ret_rms = RunningMeanStd((4,)), RunningMeanStd(())
    weights = {"actor": actor.state_dict(), "critic": critic.state_dict()}
    truncations = 0
    for _ in range(3):  # later iterations normalise with the merged statistics
        expected = ref.collect(actor, critic, 300)
        shares = [
            w.collect({**weights, "obs_mean": obs_rms.mean, "obs_var": obs_rms.var}, 300) for w in workers
        ]
        got = merge(shares, obs_rms, ret_rms)
        for name in ("actions", "terminated", "truncated"):
            assert torch.equal(getattr(got, name), getattr(expected, name)), name
        for name in ("obs", "rewards", "values", "next_values"):
            torch.testing.assert_close(getattr(got, name), getattr(expected, name), rtol=1e-5, atol=1e-6)
        assert sorted(got.episode_returns) == sorted(expected.episode_returns)
        np.testing.assert_allclose(obs_rms.mean, ref.obs_norm.rms.mean, rtol=1e-10)
        np.testing.assert_allclose(obs_rms.var, ref.obs_norm.rms.var, rtol=1e-10)
        np.testing.assert_allclose(ret_rms.var, ref.ret_rms.var, rtol=1e-10)
        assert obs_rms.count == ref.obs_norm.rms.count and ret_rms.count == ref.ret_rms.count
        truncations += int(expected.truncated.sum())
    assert truncations > 0  # V(final obs) bootstrapping went through the split as well


def test_without_ray_the_message_names_the_extra(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` raise ImportError
    with pytest.raises(MissingExtra, match=r"pip install 'trustpg\[ray\]'"):
        import_ray()
    from trustpg.app.cli import main

    code = main(["train", "--workers", "2", "--steps", "512", "--run-dir", str(tmp_path),
                 "--no-progress", "--no-tensorboard"])  # fmt: skip
    assert code == 2
    assert "trustpg[ray]" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"workers": -1}, "workers"),
        ({"workers": 3}, "divisor of num_envs=8"),
        ({"ray_address": ""}, "ray_address"),
    ],
)
def test_invalid_worker_settings_are_rejected(changes, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**changes)
