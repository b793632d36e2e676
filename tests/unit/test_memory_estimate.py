"""The memory check counts CNN and recurrent networks as they are built, not as MLPs of the same
widths: a run that fits is not refused, one that cannot fit is refused before anything is built."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import trustpg.io.memory as memory
from trustpg.config.train_config import TrainConfig
from trustpg.train.build import check_memory_for, networks

ATARI = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
MINATAR = gym.spaces.Box(0, 1, (10, 10, 4), np.uint8)


def _count(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def _estimate(c: TrainConfig, obs: gym.Space, act: gym.Space, monkeypatch) -> int:
    """The bytes check_memory_for estimates: the smallest memory it accepts (bisection)."""
    lo, hi = 0, 1 << 50
    while lo < hi:
        mid = (lo + hi) // 2
        monkeypatch.setattr(memory, "available_memory", lambda m=mid: m)
        try:
            check_memory_for(c, obs, act, None)
            hi = mid
        except ValueError:
            lo = mid + 1
    return lo


@pytest.mark.parametrize(
    "policy, obs", [("cnn", ATARI), ("cnn", MINATAR), ("gru", gym.spaces.Box(-1, 1, (3,))),
                    ("lstm", gym.spaces.Box(-1, 1, (3,)))],
)  # fmt: skip
def test_estimate_counts_the_parameters_of_the_networks_as_built(policy, obs, monkeypatch):
    c = TrainConfig(env="x", policy=policy, hidden_sizes=(48, 32), num_envs=1, steps_per_env=1)
    act = gym.spaces.Discrete(6)
    actor, critic = networks(c, obs, act, None)  # real, allocated networks
    sizes = c.hidden_sizes, c.critic_hidden_sizes
    model = memory.estimate_model_bytes(0, 0, *sizes, _count(actor), _count(critic))
    estimate = _estimate(c, obs, act, monkeypatch)
    assert model < estimate < model + (1 << 20)  # the networks, plus one transition's batch


def test_atari_sized_cnn_batch_that_fits_is_not_refused(monkeypatch):
    """16 × 2048 Atari frames (4×84×84, uint8): about 8 GB with the CNN's activations. Counted as
    float64 observations of an MLP (24 bytes an entry, the check before) they came to 22 GB, and a
    16 GB machine refused a run it could hold."""
    c = TrainConfig(env="x", policy="auto", num_envs=16, steps_per_env=2048)
    estimate = _estimate(c, ATARI, gym.spaces.Discrete(6), monkeypatch)
    assert 5 << 30 < estimate < 12 << 30
    monkeypatch.setattr(memory, "available_memory", lambda: 16 << 30)
    check_memory_for(c, ATARI, gym.spaces.Discrete(6), None)


def test_cnn_activations_follow_the_frame_size(monkeypatch):
    """Per transition the Nature-CNN leaves ~46k values for the backward pass on 84×84 frames:
    the estimate grows with the batch by at least that, not by an MLP's 2·(64+64)."""
    c1 = TrainConfig(env="x", policy="cnn", num_envs=1, steps_per_env=1024)
    c2 = TrainConfig(env="x", policy="cnn", num_envs=1, steps_per_env=2048)
    act = gym.spaces.Discrete(6)
    per_step = (_estimate(c2, ATARI, act, monkeypatch) - _estimate(c1, ATARI, act, monkeypatch)) / 1024
    conv_outputs = 32 * 20 * 20 + 64 * 9 * 9 + 64 * 7 * 7  # of the three convolutions
    floor = 4 * 2 * conv_outputs + 2 * ATARI.shape[0] * 84 * 84  # float32 pre/post, uint8 frames
    assert floor < per_step < 1.25 * floor  # frames not counted as float64 (677 kB a step before)


def test_huge_frames_are_refused_naming_the_frames(monkeypatch):
    monkeypatch.setattr(memory, "available_memory", lambda: 8 << 30)
    frames = gym.spaces.Box(0, 255, (3, 2000, 2000), np.uint8)
    c = TrainConfig(env="x", policy="auto")
    with pytest.raises(ValueError, match=r"downscale the frames of shape \(3, 2000, 2000\)") as err:
        check_memory_for(c, frames, gym.spaces.Discrete(6), None)
    assert "8.0 GB of memory is available" in str(err.value) and "\n" not in str(err.value)


def test_huge_recurrent_network_is_refused(monkeypatch):
    """GRU(3, 200000): 3·(3+200000+2)·200000 ≈ 1.2·10¹¹ weights. As an MLP of that width the check
    counted 1.8·10⁶ and let the build try to allocate ~450 GB."""
    monkeypatch.setattr(memory, "available_memory", lambda: 8 << 30)
    c = TrainConfig(env="x", policy="gru", hidden_sizes=(200_000,))
    with pytest.raises(ValueError, match=r"^hidden_sizes=\(200000,\) needs networks of about"):
        check_memory_for(c, gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(6), None)
