"""Bit-exact resume and determinism (issue 6): N updates in one go equal N/2, stop (cleanly, by
SIGINT, or by a crash), resume, N/2 — same parameters and the same metrics rows, on the CPU."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import _faulty_envs
import gymnasium as gym
import pytest
import torch
from _runs import as_from_a_terminal, continues_identically

from trustpg import NPG, TRPO, VPG, Agent
from trustpg.core.linalg import flat_params
from trustpg.envs.envstate import capture_vector_env, restore_vector_env
from trustpg.io.checkpoint import load_checkpoint
from trustpg.io.logger import read_metrics
from trustpg.io.manifest import config_hash
from trustpg.io.record import TIMING_COLUMNS

TIMING = TIMING_COLUMNS
SMALL = dict(num_envs=2, steps_per_env=64, progress=False, tensorboard=False, eval_episodes=0)
FACTORIES = {"trpo": TRPO, "npg": NPG, "vpg": VPG}


def _strip(rows: list[dict]) -> list[dict]:
    """Rows without timing columns; NaN (no episode ended) made comparable."""
    return [{k: ("nan" if v != v else v) for k, v in r.items() if k not in TIMING} for r in rows]


def _state(agent: Agent) -> dict[str, torch.Tensor]:
    tensors, _ = agent.trainer.state()
    return tensors


def _assert_same_state(a: Agent, b: Agent) -> None:
    ta, tb = _state(a), _state(b)
    assert ta.keys() == tb.keys()
    for k in ta:
        assert torch.equal(ta[k], tb[k]), k


CASES = [
    ("CartPole-v1", "trpo", {}),
    ("CartPole-v1", "vpg", {"vpg_optimizer": "adam"}),
    ("CartPole-v1", "npg", {"normalize_reward": True}),
    ("Pendulum-v1", "trpo", {}),
    ("InvertedPendulum-v5", "trpo", {}),
    ("CartPole-v1", "trpo", {"max_kl": 0.02, "max_kl_final": 0.002, "steps": 8 * 128}),
    ("Pendulum-v1", "trpo", {"vf_hidden_sizes": (32, 16)}),
    # Training episodes of 50 steps: a checkpoint falls mid-episode, with the cut counter saved.
    ("Pendulum-v1", "trpo", {"train_time_limit": 50}),
]


@pytest.mark.parametrize("env, algo, extra", CASES, ids=[f"{e}-{a}" for e, a, _ in CASES])
def test_resume_is_bit_exact(tmp_path, env, algo, extra):
    steps = 8 * 128
    whole = FACTORIES[algo](env, seed=0, **SMALL, **extra)
    rows_whole: list = []
    whole.learn(steps, callback=rows_whole.append)

    first = FACTORIES[algo](env, seed=0, **SMALL, **extra)
    rows: list = []
    first.learn(steps // 2, callback=rows.append, run_dir=tmp_path)
    first.close()
    second = Agent.load(tmp_path / "checkpoints" / "last")
    second.learn(steps // 2, callback=rows.append)

    assert _strip(rows) == _strip(rows_whole)
    assert torch.equal(flat_params(second.policy), flat_params(whole.policy))
    _assert_same_state(second, whole)


def test_resume_after_a_crash_drops_unsaved_rows_and_is_bit_exact(tmp_path):
    whole = TRPO("CartPole-v1", seed=1, **SMALL)
    whole.learn(6 * 128)
    crashing = TRPO("CartPole-v1", seed=1, checkpoint_every=2, **SMALL)

    def crash_after_update_3(row):
        if row["update"] == 3:
            raise RuntimeError("power cut")

    with pytest.raises(RuntimeError, match="power cut"):
        crashing.learn(6 * 128, callback=crash_after_update_3, run_dir=tmp_path)
    assert len(read_metrics(tmp_path / "metrics.csv")) == 3  # update 3 was logged, not saved
    resumed = Agent.load(tmp_path / "checkpoints" / "last")
    assert resumed.trainer.updates == 2
    resumed.learn(4 * 128, run_dir=tmp_path)
    rows = read_metrics(tmp_path / "metrics.csv")
    assert [int(r["update"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    _assert_same_state(resumed, whole)


def test_saving_right_after_loading_keeps_the_env_state(tmp_path):
    whole = TRPO("CartPole-v1", seed=2, **SMALL)
    whole.learn(4 * 128)
    first = TRPO("CartPole-v1", seed=2, **SMALL)
    first.learn(2 * 128)
    first.save(tmp_path / "a")
    Agent.load(tmp_path / "a").save(tmp_path / "b")  # never collected in between
    second = Agent.load(tmp_path / "b")
    second.learn(2 * 128)
    _assert_same_state(second, whole)


def test_resume_of_an_env_without_state_handler_warns_and_continues(tmp_path, caplog):
    kwargs = json.dumps({"fault_step": 10**9})  # never faults: just an env trustpg cannot capture
    agent = TRPO(_faulty_envs.ENV_ID, seed=0, env_kwargs=kwargs, **SMALL)
    agent.learn(128, run_dir=tmp_path)
    resumed = Agent.load(tmp_path / "checkpoints" / "last")
    resumed.learn(128)
    assert "will not match an uninterrupted one exactly" in caplog.text
    assert "FaultyCartPole" in caplog.text
    assert resumed.num_timesteps == 256


def test_resume_on_another_cpu_or_stack_says_it_is_not_bit_exact(tmp_path, caplog):
    """A resume on the machine and stack the run started on is silent; on another CPU model or
    library build it warns once, naming what changed (those round differently: docs/reliability.md)."""
    TRPO("CartPole-v1", seed=0, **SMALL).learn(128, run_dir=tmp_path)
    Agent.load(tmp_path / "checkpoints" / "last").learn(128, run_dir=tmp_path)
    assert "resumed with" not in caplog.text
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["sessions"][0]["machine"]["cpu"] = "Another CPU"
    manifest["sessions"][0]["software"]["torch"] = "0.0.1"
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    resumed = Agent.load(tmp_path / "checkpoints" / "last")
    resumed.learn(128, run_dir=tmp_path)
    assert "resumed with CPU Another CPU → " in caplog.text
    assert f"torch 0.0.1 → {torch.__version__}" in caplog.text
    assert "not bit-identically" in caplog.text
    assert resumed.num_timesteps == 384


ROUNDTRIP_ENVS = ["CartPole-v1", "Pendulum-v1", "Acrobot-v1", "MountainCarContinuous-v0",
                  "InvertedPendulum-v5", "Hopper-v5", "Ant-v5", "Humanoid-v5", "Reacher-v5"]  # fmt: skip


@pytest.mark.parametrize("env_id", ROUNDTRIP_ENVS)
def test_env_state_round_trip_continues_identically(env_id):
    """Step an env, capture it as JSON, restore into a differently seeded env: the next steps match
    exactly (across resets, so TimeLimit counters and np_random are restored too). A 40-step time
    limit makes every env cross resets while compared, and be mid-episode when captured."""
    same_step = {"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}
    kw = dict(num_envs=2, vectorization_mode="sync", vector_kwargs=same_step, max_episode_steps=40)
    a, b = gym.make_vec(env_id, **kw), gym.make_vec(env_id, **kw)
    try:
        assert continues_identically(a, b, warmup=60, steps=150) >= 2 * 3
    finally:
        a.close()
        b.close()


def test_restore_refuses_a_different_env_and_leaves_it_unchanged():
    same_step = {"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}
    a = gym.make_vec("CartPole-v1", num_envs=2, vectorization_mode="sync", vector_kwargs=same_step)
    b = gym.make_vec("Pendulum-v1", num_envs=2, vectorization_mode="sync", vector_kwargs=same_step)
    a.reset(seed=0)
    b.reset(seed=0)
    before = json.dumps(capture_vector_env(b))
    why = restore_vector_env(b, capture_vector_env(a))
    assert why is not None and "CartPoleEnv" in why
    assert json.dumps(capture_vector_env(b)) == before


def test_same_seed_is_identical_whatever_the_thread_count_at_construction():
    def run(threads: int):
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            agent = TRPO("CartPole-v1", seed=4, **SMALL)
        finally:
            torch.set_num_threads(before)
        rows: list = []
        agent.learn(2 * 128, callback=rows.append)
        return _strip(rows), _state(agent)

    rows_a, state_a = run(1)
    rows_b, state_b = run(2)
    assert rows_a == rows_b
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)


def test_building_and_training_an_agent_leaves_the_global_rngs_untouched():
    """A user's own torch/NumPy/random draws are not shifted by trustpg: networks are initialised
    from the seed under a forked RNG, and sampling, minibatches and envs have their own generators
    (docs/reliability.md, Determinism). Any global draw inside would change the states compared."""
    import random

    import numpy as np

    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    before = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    agent = TRPO("CartPole-v1", seed=4, **SMALL)
    agent.learn(2 * 128)
    agent.evaluate(1)
    assert torch.equal(torch.get_rng_state(), before[0])
    assert np.array_equal(np.random.get_state()[1], before[1])
    assert random.getstate() == before[2]


# -- the command line: SIGINT mid-run, resume, compare with an uninterrupted run ------------------
def _train(run: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "trustpg", "train", "--env", "CartPole-v1", "--num-envs", "2",
           "--steps-per-env", "64", "--seed", "5", "--run-dir", str(run.parent), "--run-name", run.name,
           "--no-progress", "--no-tensorboard", "--eval-episodes", "0", *extra]  # fmt: skip
    return subprocess.Popen(
        preexec_fn=as_from_a_terminal, args=cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _rows(run: Path) -> int:
    path = run / "metrics.csv"
    return len(path.read_text().splitlines()) - 1 if path.exists() else 0


def test_cli_interrupt_and_resume_equals_uninterrupted_run(tmp_path):
    steps = str(60 * 128)
    whole = _train(tmp_path / "whole", "--steps", steps)
    _, err = whole.communicate(timeout=600)
    assert whole.returncode == 0, err

    run = tmp_path / "split"
    proc = _train(run, "--steps", steps)
    try:
        deadline = time.monotonic() + 300  # only stops a hung test; asserts nothing about speed
        while _rows(run) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "interrupted at" in out, "the run finished before SIGINT arrived"
    resumed = subprocess.run(
        [sys.executable, "-m", "trustpg", "train", "--resume", str(run), "--no-progress"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stdout

    assert _strip(read_metrics(run / "metrics.csv")) == _strip(
        read_metrics(tmp_path / "whole" / "metrics.csv")
    )
    ta, meta_a = load_checkpoint(run / "checkpoints" / "last")
    tb, meta_b = load_checkpoint(tmp_path / "whole" / "checkpoints" / "last")
    assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
    assert meta_a["collector"] == meta_b["collector"]
    # The manifest records both sessions, each with its command, and one config (same hash).
    sessions = json.loads((run / "manifest.json").read_text())["sessions"]
    assert len(sessions) == 2 and "--resume" in sessions[1]["command"]
    assert (
        sessions[0]["config_hash"]
        == sessions[1]["config_hash"]
        == config_hash(json.loads((run / "config.json").read_text()))
    )


def test_two_update_threads_are_deterministic_and_match_one_thread_to_rounding():
    """update_threads=2 (0 = auto on 2+ cores) splits the policy update's matrix products:
    the same seed still gives identical runs, and the first step equals the 1-thread one up to
    float32 rounding (the algorithm is unchanged)."""
    big = {**SMALL, "num_envs": 4, "steps_per_env": 512}  # 2,048 states: large enough to split

    def run(threads: int):
        agent = TRPO("Pendulum-v1", seed=3, update_threads=threads, **big)
        rows: list = []
        agent.learn(2 * 2048, callback=rows.append)
        assert agent.trainer.update_threads == threads
        return _strip(rows), _state(agent)

    rows_a, state_a = run(2)
    rows_b, state_b = run(2)
    assert rows_a == rows_b
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    rows_1, _ = run(1)
    for key in ("surrogate_after", "measured_kl", "predicted_kl", "step_norm"):
        assert rows_1[0][key] == pytest.approx(rows_a[0][key], rel=1e-4), key


def test_update_thread_count_defaults_to_at_most_two_usable_cores():
    from trustpg.config.train_config import usable_cores
    from trustpg.train.trainer import update_thread_count

    assert update_thread_count(3) == 3
    assert 1 <= update_thread_count(0) <= 2
    assert update_thread_count(0) <= usable_cores()
