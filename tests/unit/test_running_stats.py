"""RunningMeanStd against numpy over the concatenated stream, and its checkpoint round trip."""

from __future__ import annotations

import numpy as np
import pytest

from trustpg.core.moments import RunningMeanStd


@pytest.mark.parametrize("shape", [(), (3,)])
def test_running_moments_equal_the_whole_stream(shape):
    rng = np.random.default_rng(0)
    chunks = [rng.normal(2.0, 3.0, size=(n, *shape)) for n in (5, 1, 17, 40)]
    rms = RunningMeanStd(shape)
    for c in chunks:
        rms.update(c)
    whole = np.concatenate(chunks)
    np.testing.assert_allclose(rms.mean, whole.mean(0), rtol=1e-12)
    np.testing.assert_allclose(rms.var, whole.var(0), rtol=1e-12)
    assert rms.count == len(whole)


@pytest.mark.parametrize("shape", [(), (3,)])
def test_state_dict_round_trip_after_updates(shape):
    # A scalar (reward-scale) normaliser used to turn its mean into a numpy scalar after the first
    # update, and saving the checkpoint then failed in torch.from_numpy.
    rms = RunningMeanStd(shape)
    rms.update(np.arange(12.0).reshape(-1, *shape) if shape else np.arange(12.0))
    state = rms.state_dict()
    other = RunningMeanStd(shape)
    other.load_state_dict(state)
    assert np.array_equal(other.mean, rms.mean) and np.array_equal(other.var, rms.var)
    assert other.count == rms.count


def test_reward_scaling_equals_the_step_by_step_recursion():
    """Collector._scale_rewards updates the return statistics once per batch; a naive loop that
    updates them after every step (the recursion of the definition) gives the same moments and the
    same scaled rewards, and leaves the same discounted returns for the next batch."""
    import gymnasium as gym

    from trustpg.sampling.rollout import NORM_EPS, Collector

    env = gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1")] * 3)
    collector = Collector(env, 0, False, 10.0, True, 0.97)
    rng = np.random.default_rng(1)
    ref_rms, ref_disc = RunningMeanStd(()), np.zeros(3)
    for _ in range(3):  # later batches start from the carried-over discounted returns
        rew = rng.normal(1.0, 2.0, size=(50, 3)).astype(np.float32)
        done = rng.random((50, 3)) < 0.1
        got = collector._scale_rewards(rew, done)
        for t in range(50):
            ref_disc = ref_disc * 0.97 + rew[t]
            ref_rms.update(ref_disc)
            ref_disc[done[t]] = 0.0
        np.testing.assert_allclose(collector.ret_rms.var, ref_rms.var, rtol=1e-12)
        np.testing.assert_allclose(collector.ret_rms.mean, ref_rms.mean, rtol=1e-12)
        np.testing.assert_array_equal(collector._disc_ret, ref_disc)
        np.testing.assert_allclose(got, rew / np.sqrt(ref_rms.var + NORM_EPS), rtol=1e-6)
    env.close()


def test_observation_normaliser_follows_new_statistics():
    """The normaliser caches sqrt(var + eps); after the statistics change it uses the new ones."""
    from trustpg.sampling.rollout import NORM_EPS, ObsNormalizer

    rms = RunningMeanStd((2,))
    norm = ObsNormalizer(rms, 5.0)
    x = np.array([[1.0, -2.0], [30.0, 0.5]])
    for data in (np.zeros((0, 2)), np.array([[0.0, 1.0], [2.0, 5.0]]), np.array([[9.0, -3.0]])):
        rms.update(data)
        want = np.clip((x - rms.mean) / np.sqrt(rms.var + NORM_EPS), -5.0, 5.0).astype(np.float32)
        np.testing.assert_array_equal(norm(x), want)
    state = {k: v * 2 for k, v in rms.state_dict().items()}
    rms.load_state_dict(state)
    want = np.clip((x - rms.mean) / np.sqrt(rms.var + NORM_EPS), -5.0, 5.0).astype(np.float32)
    np.testing.assert_array_equal(norm(x), want)
