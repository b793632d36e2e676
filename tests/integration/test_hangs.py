"""Nothing waits forever without a word (issue 18): hung and dead env workers, a stopped critic
worker, a Ray address with no cluster behind it, evaluation of an env without a time limit.

Every test bounds its own time: subprocesses have timeouts, and an in-process test that hangs is
ended by ``faulthandler`` (with every thread's traceback) instead of hanging the suite.
"""

from __future__ import annotations

import contextlib
import faulthandler
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import _faulty_envs
import _toy_envs
import gymnasium as gym
import numpy as np
import pytest
import torch

from trustpg import TRPO
from trustpg.accel.critic_process import CriticProcess
from trustpg.envs.watchdog import Deadline, StepTimeout, TimedVectorEnv
from trustpg.errors import EnvFault, RayConnectError
from trustpg.io.checkpoint import load_checkpoint
from trustpg.sampling.ray_connect import connect_ray

SMALL = dict(num_envs=2, steps_per_env=32, progress=False, tensorboard=False, eval_episodes=0)
#: A test still running after this many seconds is stopped (faulthandler), i.e. it hung.
LIMIT = 240
HERE = Path(__file__).parent


@pytest.fixture(autouse=True)
def _bounded():
    faulthandler.dump_traceback_later(LIMIT, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


def _faulty(mode: str, fault_step: int = 100) -> str:
    return json.dumps({"mode": mode, "fault_env": 1, "fault_step": fault_step, "base_seed": 0})


def _cli(tmp_path: Path, *args: str, timeout: float = 180) -> tuple[subprocess.CompletedProcess, float]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    env.pop("RAY_ADDRESS", None)
    cmd = [sys.executable, "-m", "trustpg", "train", "--run-dir", str(tmp_path), "--run-name", "r",
           "--no-progress", "--no-tensorboard", "--eval-episodes", "0", *args]  # fmt: skip
    t0 = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=tmp_path)
    return out, time.monotonic() - t0


# -- env step timeout -----------------------------------------------------------------------------
@pytest.mark.parametrize("vectorization", ["sync", "async"])
def test_hung_env_step_stops_the_run_within_step_timeout(tmp_path, vectorization):
    agent = TRPO(_faulty_envs.ENV_ID, seed=0, env_kwargs=_faulty("hang"), vectorization=vectorization,
                 step_timeout=1.0, checkpoint_every=1, **SMALL)  # fmt: skip
    try:
        agent.learn(3 * 64, run_dir=tmp_path)  # updates 1-3, checkpointed; step 100 is in update 4
        t0 = time.monotonic()
        with pytest.raises(EnvFault) as err:
            agent.learn(10 * 64, run_dir=tmp_path)
        waited = time.monotonic() - t0
    finally:
        t1 = time.monotonic()
        agent.close()
        closing = time.monotonic() - t1
    assert str(err.value).startswith(
        "environment 1's step took longer than step_timeout=1 s at step 100 (rollout step 3); "
        "the run stops here and the last checkpoint is unchanged. Raise --step-timeout"
    )
    assert waited < 20 and closing < 10  # 1 s plus one rollout, not forever
    assert load_checkpoint(tmp_path / "checkpoints" / "last")[1]["env_steps"] == 3 * 64


@pytest.mark.parametrize("vectorization", ["sync", "async"])
def test_hung_env_reset_stops_the_run(vectorization):
    agent = TRPO(_faulty_envs.ENV_ID, seed=0, env_kwargs=_faulty("hang", fault_step=0),
                 vectorization=vectorization, step_timeout=1.0, **SMALL)  # fmt: skip
    try:
        with pytest.raises(
            EnvFault, match=r"^environment 1's reset took longer than step_timeout=1 s at reset;"
        ):
            agent.learn(64)
    finally:
        agent.close()


@pytest.mark.parametrize("vectorization", ["sync", "async"])
def test_hung_env_on_the_command_line_exits_1_with_one_line(tmp_path, vectorization):
    out, _ = _cli(tmp_path, "--env-module", "_faulty_envs", "--env", _faulty_envs.ENV_ID,
                  "--env-kwargs", _faulty("hang"), "--vectorization", vectorization,
                  "--num-envs", "2", "--steps-per-env", "32", "--checkpoint-every", "1",
                  "--step-timeout", "1", "--steps", "100000")  # fmt: skip
    assert out.returncode == 1, out.stderr
    assert (
        "trustpg: stopped: environment 1's step took longer than step_timeout=1 s at step 100" in out.stderr
    )
    assert "Traceback" not in out.stderr and len(out.stderr.splitlines()) == 1, out.stderr
    assert load_checkpoint(tmp_path / "r" / "checkpoints" / "last")[1]["env_steps"] == 3 * 64


def test_no_step_timeout_means_no_timer_and_the_alarm_is_left_as_it_was():
    env = gym.make_vec("CartPole-v1", num_envs=2, vectorization_mode="sync")
    assert TimedVectorEnv(env, 0.0).deadline is None
    timed = TimedVectorEnv(env, 5.0)
    with timed.guard():
        assert signal.getitimer(signal.ITIMER_REAL)[0] > 0  # armed once for the block
        timed.reset(0)
        timed.step(np.zeros(2, np.int64))
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert signal.getsignal(signal.SIGALRM) == signal.SIG_DFL
    env.close()


class _Swallowing(gym.Env):
    """A step that catches everything, StepTimeout included, and carries on."""

    observation_space = gym.spaces.Box(-1, 1, (1,))
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        return np.zeros(1, np.float32), {}

    def step(self, action):
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            with contextlib.suppress(BaseException):  # the point of this env
                time.sleep(0.05)
        return np.zeros(1, np.float32), 0.0, False, False, {}


def test_an_env_that_swallows_the_timeout_is_still_stopped():
    timed = TimedVectorEnv(gym.vector.SyncVectorEnv([_Swallowing]), 0.3)
    with timed.guard(), pytest.raises(StepTimeout):
        timed.step(np.zeros(1, np.int64))


def test_off_the_main_thread_a_watchdog_thread_interrupts_python_code():
    deadline, caught = Deadline(0.3), []

    def busy() -> None:
        with deadline.watch():
            deadline.started = time.monotonic()
            try:
                while True:
                    sum(range(100))
            except StepTimeout:
                caught.append(time.monotonic() - deadline.started)

    worker = threading.Thread(target=busy, daemon=True)
    worker.start()
    worker.join(30)
    assert caught and 0.25 < caught[0] < 10
    assert signal.getsignal(signal.SIGALRM) == signal.SIG_DFL  # the main thread's alarm is untouched


# -- async worker processes that exit -----------------------------------------------------------
def test_async_worker_that_exits_is_an_env_fault_naming_env_and_exit_code(tmp_path):
    agent = TRPO(_faulty_envs.ENV_ID, seed=0, env_kwargs=_faulty("exit"), vectorization="async",
                 step_timeout=0.0, **SMALL)  # fmt: skip
    try:
        with pytest.raises(EnvFault) as err:
            agent.learn(100_000)
    finally:
        agent.close()
    assert str(err.value) == (
        "environment 1's worker process exited (code 3) at step 100 (rollout step 3); "
        "the run stops here and the last checkpoint is unchanged."
    )


def test_killed_async_worker_is_named_with_its_signal():
    agent = TRPO("CartPole-v1", seed=0, vectorization="async", **SMALL)

    def kill_worker_1(row: dict) -> None:
        os.kill(agent.trainer.collector.env.unwrapped.processes[1].pid, signal.SIGKILL)

    try:
        with pytest.raises(
            EnvFault, match=r"^environment 1's worker process was killed by signal SIGKILL at step 33 "
        ):
            agent.learn(10 * 64, callback=kill_worker_1)
    finally:
        agent.close()


@pytest.mark.parametrize("vectorization", ["sync", "async"])
def test_an_env_that_raises_on_the_command_line_is_one_line_exit_1(tmp_path, vectorization):
    """In an async worker, gymnasium warns the worker's traceback (three red warnings) before it
    raises the exception in the trainer; the user sees trustpg's one line, as with sync envs."""
    out, _ = _cli(tmp_path, "--env-module", "_faulty_envs", "--env", _faulty_envs.ENV_ID,
                  "--env-kwargs", _faulty("raise"), "--vectorization", vectorization, "--num-envs", "2",
                  "--steps-per-env", "32", "--steps", "100000")  # fmt: skip
    assert out.returncode == 1, out.stderr
    assert out.stderr.startswith("trustpg: stopped: environment 1 raised RuntimeError: simulated crash")
    assert len(out.stderr.splitlines()) == 1, out.stderr


def test_async_worker_exit_on_the_command_line_is_one_line_exit_1(tmp_path):
    out, _ = _cli(tmp_path, "--env-module", "_faulty_envs", "--env", _faulty_envs.ENV_ID,
                  "--env-kwargs", _faulty("exit"), "--vectorization", "async", "--num-envs", "2",
                  "--steps-per-env", "32", "--steps", "100000")  # fmt: skip
    assert out.returncode == 1, out.stderr
    assert "trustpg: stopped: environment 1's worker process exited (code 3) at step 100" in out.stderr
    assert "Traceback" not in out.stderr and "EOFError" not in out.stderr
    assert len(out.stderr.splitlines()) == 1, out.stderr


# -- critic worker --------------------------------------------------------------------------------
def _stop(pid: int) -> None:
    os.kill(pid, signal.SIGSTOP)


def _resume_if_alive(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)


def test_stopped_critic_worker_is_killed_and_the_fit_redone_in_process(monkeypatch, caplog):
    from trustpg.core.linalg import flat_params
    from trustpg.core.optim import Adam
    from trustpg.nets.policies import Critic
    from trustpg.train.value import CriticFitter, fit_value

    monkeypatch.setattr(CriticProcess, "min_timeout", 1.0)
    g = torch.Generator().manual_seed(2)
    obs, ret = torch.randn(200, 4, generator=g), torch.randn(200, generator=g)

    def fitter_and_critic(process: bool) -> tuple[CriticFitter, Critic]:
        torch.manual_seed(0)
        critic = Critic(4)
        return CriticFitter(critic, Adam(critic.parameters(), lr=1e-2), torch.Generator().manual_seed(3),
                            epochs=2, minibatch_size=32, overlap=True, process=process), critic  # fmt: skip

    ref_fitter, ref = fitter_and_critic(False)
    fit_value(ref, ref_fitter.optimizer, obs, ret, epochs=2, minibatch_size=32,
              generator=torch.Generator().manual_seed(3))  # fmt: skip
    fitter, critic = fitter_and_critic(True)
    fitter.prepare()
    pid = fitter._worker.pid
    _stop(pid)  # the job fits in the pipe; the answer never comes
    try:
        fitter.start(obs, ret)
        t0 = time.monotonic()
        fitter.finish()
        assert time.monotonic() - t0 < 10
    finally:
        _resume_if_alive(pid)
        fitter.close()
    assert (
        f"the critic worker (pid {pid}) did not answer within 1 s (stopped or hung); killed it" in caplog.text
    )
    assert "fitting the critic in this process instead" in caplog.text
    assert torch.equal(flat_params(critic), flat_params(ref))  # the same minibatches, redone here
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_run_completes_when_the_critic_worker_is_stopped_mid_run(monkeypatch, caplog):
    monkeypatch.setattr(CriticProcess, "min_timeout", 2.0)
    agent = TRPO("CartPole-v1", seed=0, **SMALL)
    stopped: list[int] = []
    pids: list[int] = []

    def stop_worker_after_update_2(row: dict) -> None:
        worker = agent.trainer.critic_fit._worker
        if worker is not None and worker.pid is not None:
            pids.append(worker.pid)
        if row["update"] == 2:
            stopped.append(worker.pid)
            _stop(worker.pid)

    rows: list[dict] = []
    try:
        agent.learn(6 * 64, callback=lambda row: (rows.append(row), stop_worker_after_update_2(row))[1])
    finally:
        for pid in stopped:
            _resume_if_alive(pid)
        agent.close()
    assert [r["update"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert "did not answer within 2 s (stopped or hung); killed it" in caplog.text
    assert all(np.isfinite(r["value_loss"]) for r in rows[1:])
    assert pids[-1] != stopped[0]  # a new worker took over


# -- Ray address without a cluster ----------------------------------------------------------------
def _ray_running_here() -> bool:
    try:
        from ray._private.services import find_gcs_addresses
    except ImportError:
        return False
    return bool(find_gcs_addresses())


def _no_cluster_run(tmp_path: Path, address: str) -> subprocess.CompletedProcess:
    pytest.importorskip("ray")
    if address == "auto" and _ray_running_here():
        pytest.skip("a Ray instance runs on this machine: 'auto' would find it")
    out, seconds = _cli(tmp_path, "--workers", "2", "--ray-address", address, "--steps", "1000", timeout=120)
    assert seconds < 90  # the imports, a few processes and one refused connection
    return out


@pytest.mark.parametrize("address", ["auto", "ray://127.0.0.1:1"])
def test_ray_address_without_a_cluster_is_one_line_exit_2(tmp_path, address):
    out = _no_cluster_run(tmp_path, address)
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith(f"trustpg: error: ray_address={address!r}: no ")
    assert "ray start --head" in out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr


def test_ray_address_without_a_cluster_creates_no_run_directory(tmp_path):
    out = _no_cluster_run(tmp_path, "ray://127.0.0.1:1")
    assert out.returncode == 2, out.stderr
    assert not (tmp_path / "r").exists()


def test_ray_connection_that_never_answers_is_cut_at_the_deadline():
    """An open port that does not speak Ray (Ray would retry a host:port address forever)."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    class NeverAnswers:
        @staticmethod
        def init(address: str) -> None:
            time.sleep(3600)

    try:
        t0 = time.monotonic()
        with pytest.raises(RayConnectError, match=rf"^ray_address='127.0.0.1:{port}': no Ray cluster "
                           r"answered within 0.5 s; start one with 'ray start --head'"):  # fmt: skip
            connect_ray(NeverAnswers, f"127.0.0.1:{port}", timeout=0.5)
        assert time.monotonic() - t0 < 5
    finally:
        server.close()


# -- evaluation of an env without a time limit ---------------------------------------------------
def test_evaluation_cuts_episodes_of_an_env_without_time_limit_and_warns_once(monkeypatch, caplog):
    import trustpg.train.agent as agent_mod

    assert agent_mod.EVAL_MAX_STEPS == 100_000  # the documented default, shortened here
    monkeypatch.setattr(agent_mod, "EVAL_MAX_STEPS", 300)
    agent = TRPO(_toy_envs.ENDLESS_ID, seed=0, **SMALL)
    try:
        mean, _, returns = agent.evaluate(3)
        assert returns == [300.0, 300.0, 300.0] and mean == 300.0
        warnings = [r.getMessage() for r in caplog.records if "evaluation:" in r.getMessage()]
        assert warnings == [
            "evaluation: episode 0 reached 300 steps without ending (the env has no time limit); "
            "cut there — pass max_episode_steps to change this"
        ]
        caplog.clear()
        assert agent.evaluate(2, max_episode_steps=50)[2] == [50.0, 50.0]
        assert "evaluation:" not in caplog.text  # a cap the caller chose is not a surprise
    finally:
        agent.close()


def test_eval_max_episode_steps_on_the_command_line_cuts_each_episode(tmp_path, capsys):
    from trustpg.app.cli import main

    agent = TRPO(_toy_envs.ENDLESS_ID, seed=0, **SMALL)
    try:
        path = agent.save(tmp_path / "endless")
    finally:
        agent.close()
    argv = ["eval", str(path), "--episodes", "2", "--max-episode-steps", "7", "--env-module", "_toy_envs"]
    assert main(argv) == 0
    assert "(deterministic, 2 episodes): 7.00 ± 0.00" in capsys.readouterr().out


def test_evaluation_keeps_the_envs_own_time_limit(monkeypatch, caplog):
    import trustpg.train.agent as agent_mod

    monkeypatch.setattr(agent_mod, "EVAL_MAX_STEPS", 10)  # not used: the env has its own limit
    agent = TRPO(_toy_envs.ENDLESS_ID, seed=0, **SMALL)
    env = gym.make(_toy_envs.ENDLESS_ID, max_episode_steps=40)
    try:
        assert agent.evaluate(2, env=env)[2] == [40.0, 40.0]
        assert "evaluation:" not in caplog.text
    finally:
        env.close()
        agent.close()
