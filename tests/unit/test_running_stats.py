"""RunningMeanStd against numpy over the concatenated stream, and its checkpoint round trip."""

from __future__ import annotations

import numpy as np
import pytest

from trustpg.rollout import RunningMeanStd


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
