"""MuJoCo's env-state handler is registered once MuJoCo is imported, not by trustpg's import."""

from __future__ import annotations

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

from trustpg.envs import envstate

pytest.importorskip("mujoco")


def test_importing_trustpg_envs_does_not_import_mujoco():
    """It cost every command ~0.2 s and a second Python started by glfw, MuJoCo env or not."""
    code = "import sys, trustpg.envs.envstate, trustpg.envs.source; print('mujoco' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_a_mujoco_env_is_captured_and_restored_exactly():
    env = gym.make("Hopper-v5")
    env.reset(seed=3)
    for _ in range(5):
        env.step(env.action_space.sample())
    saved = envstate.capture_env(env)
    assert "layers" in saved, saved
    action = np.full(env.action_space.shape, 0.3, dtype=np.float32)
    first = env.step(action)[0]
    env.step(action)
    handler = envstate._handler(env.unwrapped)
    assert handler is envstate.MUJOCO
    handler.restore(env.unwrapped, saved["layers"][-1]["state"])
    np.testing.assert_array_equal(env.step(action)[0], first)
    env.close()


def test_a_handler_registered_for_a_mujoco_env_subclass_comes_first():
    from gymnasium.envs.mujoco.hopper_v5 import HopperEnv

    mine = envstate.StateHandler(lambda env: {}, lambda env, state: None)
    envstate.register_env_state(HopperEnv, mine)
    try:
        env = gym.make("Hopper-v5")
        assert envstate._handler(env.unwrapped) is mine
        assert envstate._handler(gym.make("Walker2d-v5").unwrapped) is envstate.MUJOCO
    finally:
        envstate._HANDLERS.remove((HopperEnv, mine))
