"""The Beta policy, action masks and recurrent policies with Ray rollout workers (issue 21): one
worker gives the in-process run bit for bit, as for the default policies (tests/integration/test_ray.py);
with two, each worker carries its envs' recurrent states from one batch to the next, and masked
envs take only valid actions with their masks raw in the batch."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from trustpg import TRPO
from trustpg.core.linalg import flat_params
from trustpg.io.record import TIMING_COLUMNS
from trustpg.nets.recurrent import unpack

ray = pytest.importorskip("ray")

MASKED_ID = "trustpg_test/PickTarget-v0"
HERE = str(Path(__file__).resolve().parent)


def register_masked_env() -> None:
    """Register the masked toy env (MultiDiscrete([3, 4]), mask in a Dict observation: importing
    _masked_envs does); run in this process and, as Ray's worker setup hook, in every worker."""
    if HERE not in sys.path:
        sys.path.insert(0, HERE)
    import _masked_envs

    assert _masked_envs.ENV_ID == MASKED_ID


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
        ("trustpg/CartPoleNoVel-v1", {"policy": "lstm"}),
    ],
)
def test_one_worker_is_the_in_process_sampler(env, extra):
    rows_a, theta_a, rng_a = _run(env, critic_process=False, progress=False, **extra)
    rows_b, theta_b, rng_b = _run(env, workers=1, progress=False, **extra)
    assert rows_a == rows_b
    assert torch.equal(theta_a, theta_b) and torch.equal(rng_a, rng_b)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_two_workers_carry_each_envs_hidden_state(cell):
    """Each worker keeps the recurrent states of its own envs from one batch to the next: the
    state a sequence of the second batch starts from is the actor's state after stepping that
    env's sequence of the first (zeroed if its episode ended there), for the envs of both workers."""
    agent = TRPO("trustpg/CartPoleNoVel-v1", policy=cell, num_envs=4, steps_per_env=40, seed=3,
                 workers=2, progress=False, tensorboard=False, eval_episodes=0)  # fmt: skip
    try:
        t = agent.trainer
        sampler = t._ensure_collector()
        first = sampler.collect(t.actor, t.critic, 40)
        second = sampler.collect(t.actor, t.critic, 40)
        done = (first.terminated | first.truncated).bool()
        with torch.no_grad():
            state, starts, obs = unpack(first.policy_input, t.actor.state_size, t.actor.obs_dim)
            for k in range(obs.shape[1]):
                state = t.actor.step(obs[:, k], state * (1 - starts[:, k : k + 1]))[1]
        state = state * (~done[-1]).float().unsqueeze(-1)
        carried = second.policy_input[:, : t.actor.state_size]
        assert carried.shape[0] == 4 and torch.allclose(carried, state, atol=1e-6)
        assert (carried[:2].abs().sum() > 0) and (carried[2:].abs().sum() > 0)  # both workers' envs
    finally:
        agent.close()


def test_two_workers_take_only_valid_actions_and_keep_the_mask_raw():
    """Masked MultiDiscrete (3, 4) with two Ray workers and observation normalisation: every
    action in the batch is valid under the mask recorded beside it, the mask reaches the batch
    raw (0/1, not normalised) from the envs of both workers, and training runs (the env raises
    on an invalid action, in the worker that steps it)."""
    agent = TRPO(MASKED_ID, num_envs=4, steps_per_env=64, seed=2, workers=2, normalize_obs=True,
                 progress=False, tensorboard=False, eval_episodes=0)  # fmt: skip
    try:
        agent.learn(3 * 4 * 64)
        t = agent.trainer
        batch = t._ensure_collector().collect(t.actor, t.critic, 32)
        assert batch.obs.shape == (32, 4, 14)  # [T, N, D]: 7 target entries, then the 3 + 4 mask
        mask = batch.obs[..., -7:]
        assert torch.equal(mask, mask.round()) and set(mask.unique().tolist()) == {0.0, 1.0}
        assert not torch.equal(batch.obs[..., :7], batch.obs[..., :7].round())  # normalised
        acts = batch.actions.reshape(-1, 2).long()
        flat = mask.reshape(-1, 7).bool()
        assert flat[torch.arange(len(acts)), acts[:, 0]].all()
        assert flat[torch.arange(len(acts)), 3 + acts[:, 1]].all()
        assert all((mask[:, n] == 0).any() for n in range(4))  # envs of both workers forbid some
    finally:
        agent.close()
