"""The Beta policy, action masks and a recurrent policy with Ray rollout workers (issue 21): one
worker gives the in-process run bit for bit, as for the default policies (tests/integration/test_ray.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from trustpg import TRPO
from trustpg.core.linalg import flat_params
from trustpg.io.record import TIMING_COLUMNS

ray = pytest.importorskip("ray")

MASKED_ID = "trustpg_test/PickTarget-v0"
HERE = str(Path(__file__).resolve().parent)


def register_masked_env() -> None:
    """Register the masked toy env (MultiDiscrete([3, 4]), mask in a Dict observation); run in
    this process and, as Ray's worker setup hook, in every worker process."""
    import gymnasium as gym

    if HERE not in sys.path:
        sys.path.insert(0, HERE)
    from _masked_envs import PickTarget

    if MASKED_ID not in gym.registry:
        gym.register(MASKED_ID, entry_point=PickTarget, kwargs={"nvec": (3, 4)})


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    register_masked_env()
    # The hook is sent by value: the workers cannot import this test module by name.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(
        num_cpus=2, include_dashboard=False, log_to_driver=False,
        runtime_env={"worker_process_setup_hook": register_masked_env},
    )  # fmt: skip
    yield
    ray.shutdown()


def _run(env: str, **overrides):
    agent = TRPO(env, num_envs=4, steps_per_env=128, seed=5, **overrides)
    rows: list[dict] = []
    try:
        agent.learn(
            4 * 512, callback=lambda r: rows.append({k: v for k, v in r.items() if k not in TIMING_COLUMNS})
        )
        return rows, flat_params(agent.policy), agent.trainer.action_generator.get_state()
    finally:
        agent.close()


@pytest.mark.parametrize(
    ("env", "extra"),
    [
        ("Pendulum-v1", {"action_dist": "beta"}),
        (MASKED_ID, {}),
        ("trustpg/CartPoleNoVel-v1", {"policy": "gru"}),
    ],
)
def test_one_worker_is_the_in_process_sampler(env, extra):
    rows_a, theta_a, rng_a = _run(env, critic_process=False, progress=False, **extra)
    rows_b, theta_b, rng_b = _run(env, workers=1, progress=False, **extra)
    assert rows_a == rows_b
    assert torch.equal(theta_a, theta_b) and torch.equal(rng_a, rng_b)
