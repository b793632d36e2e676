"""Ray rollout workers (issue 7) on a local Ray instance with 2 CPUs."""

from __future__ import annotations

import pytest
import torch
from _learning import assert_solves_cartpole, train_seeds

from trustpg import TRPO
from trustpg.core.linalg import flat_params
from trustpg.io.record import TIMING_COLUMNS
from trustpg.sampling.distributed import RayCollector, WorkerRestarted

ray = pytest.importorskip("ray")

TIMING = TIMING_COLUMNS


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _run(steps: int, callback=None, **overrides):
    agent = TRPO("CartPole-v1", **overrides)
    rows = []

    def record(row):
        rows.append({k: v for k, v in row.items() if k not in TIMING})
        return None if callback is None else callback(agent, row)

    try:
        agent.learn(steps, callback=record, progress=False)
        return agent, rows
    finally:
        agent.close()


SMALL = {"num_envs": 4, "steps_per_env": 128, "seed": 5}


def test_one_worker_is_the_in_process_sampler():
    # reward normalisation on, so both normalisers go through the worker/learner merge
    # Ray runs fit the critic in turn in the learner; in-process, the thread fit is bit-identical
    # to that (the default child-process fit rounds differently, tests/unit/test_critic_process.py)
    a, rows_a = _run(4 * 512, **SMALL, normalize_reward=True, critic_process=False)
    b, rows_b = _run(4 * 512, **SMALL, normalize_reward=True, workers=1)
    assert rows_a == rows_b
    assert torch.equal(flat_params(a.policy), flat_params(b.policy))
    assert torch.equal(torch.from_numpy(a.trainer.obs_rms.var), torch.from_numpy(b.trainer.obs_rms.var))
    assert a.trainer.ret_rms.var == b.trainer.ret_rms.var
    assert torch.equal(a.trainer.action_generator.get_state(), b.trainer.action_generator.get_state())


def test_same_seed_and_workers_give_identical_runs():
    a, rows_a = _run(4 * 512, **SMALL, workers=2)
    b, rows_b = _run(4 * 512, **SMALL, workers=2)
    c, _ = _run(4 * 512, **SMALL)
    assert rows_a == rows_b
    assert torch.equal(flat_params(a.policy), flat_params(b.policy))
    # worker 1 draws its own actions, so two workers are not the in-process run
    assert not torch.equal(flat_params(a.policy), flat_params(c.policy))


def test_killed_worker_is_restarted_and_its_share_recollected(monkeypatch):
    killed = []
    submit = RayCollector._submit

    def submit_then_kill_worker_1_in_update_2(self, index, weights, steps):
        ref = submit(self, index, weights, steps)
        if self.update == 2 and index == 1 and not killed:
            # dies with its rollout task queued or running: a mid-iteration failure
            killed.append(self.workers[1])
            ray.kill(self.workers[1])
        return ref

    monkeypatch.setattr(RayCollector, "_submit", submit_then_kill_worker_1_in_update_2)
    workers_seen = []
    with pytest.warns(WorkerRestarted, match="rollout worker 1 died in update 3"):
        _, rows = _run(
            6 * 512,
            lambda ag, row: workers_seen.append(list(ag.trainer.collector.workers)),
            **SMALL,
            workers=2,
        )
    assert len(rows) == 6
    assert [r["worker_restarts"] for r in rows] == [0, 0, 1, 1, 1, 1]
    assert killed and workers_seen[1][1] is killed[0] and workers_seen[2][1] is not killed[0]
    assert workers_seen[2][0] is workers_seen[1][0]
    assert all(r["env_steps"] == 512 * (i + 1) for i, r in enumerate(rows))


@pytest.mark.slow
def test_two_workers_solve_cartpole_within_100k_steps():
    # Over seeds 0, 1, 2 (fixed up front, _learning.py), as the in-process sampler. A single seed was
    # fragile: seed 1 now ends at exactly 100k steps in one of the dips after solving (352.8).
    # Seeds 0-9 with two workers: all reach an evaluation ≥ 475 by 30k steps; the final evaluations
    # are 500 on eight seeds, 352.8 and 416.0 on the other two (seeds 1 and 7).
    runs = train_seeds(lambda seed: TRPO("CartPole-v1", seed=seed, workers=2, eval_every=5), 100_000)
    assert_solves_cartpole(runs, max_kl=0.01)
