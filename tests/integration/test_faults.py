"""Fault injection (issue 6): faulty envs, numerical failures, crashing checkpoint writers,
corrupt and malicious checkpoint files, SIGINT/SIGTERM and ``kill -9``. docs/reliability.md
lists which guarantee each test proves."""

from __future__ import annotations

import io
import json
import pickle
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import _faulty_envs
import pytest
import torch
from _runs import as_from_a_terminal
from _runs import rows as _rows
from _runs import wait_for as _wait_for

import trustpg.core.curvature as curvature_mod
import trustpg.core.rules as steps_mod
import trustpg.io.checkpoint as ckpt_mod
import trustpg.train.value as value_mod
from trustpg import NPG, TRPO, VPG, Agent
from trustpg.app.cli import main
from trustpg.core.linalg import CGResult, flat_params
from trustpg.core.line_search import KLs
from trustpg.errors import CheckpointError, EnvFault, TrainingFault
from trustpg.io.checkpoint import load_checkpoint
from trustpg.io.logger import read_metrics

SMALL = dict(num_envs=2, steps_per_env=32, progress=False, tensorboard=False, eval_episodes=0)
FACTORIES = {"trpo": TRPO, "npg": NPG, "vpg": VPG}


def _params(agent: Agent) -> torch.Tensor:
    return flat_params(agent.policy)


# -- environment faults -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "mode, what",
    [
        ("nan_obs", "environment 1 returned a non-finite observation at step 100"),
        ("inf_reward", "environment 1 returned a non-finite reward (inf) at step 100"),
        ("raise", "environment 1 raised RuntimeError: simulated crash in the physics engine at step 100"),
        # the last observation of an episode that ends (info["final_obs"]), and the reset's after it
        ("nan_final_obs", "environment 1 returned a non-finite observation at step 100"),
        ("nan_reset_obs", "environment 1 returned a non-finite observation at step 100"),
    ],
)
@pytest.mark.parametrize("vectorization", ["sync", "async"])
def test_env_fault_names_env_and_step_stops_and_keeps_last_checkpoint(tmp_path, mode, what, vectorization):
    """The same in an async worker process: the fault crosses the pipe with its env and step."""
    kwargs = json.dumps({"mode": mode, "fault_env": 1, "fault_step": 100, "base_seed": 0})
    agent = TRPO(_faulty_envs.ENV_ID, seed=0, env_kwargs=kwargs, checkpoint_every=1,
                 vectorization=vectorization, **SMALL)  # fmt: skip
    with pytest.raises(EnvFault) as err:
        agent.learn(100_000, run_dir=tmp_path)
    assert what in str(err.value)
    assert "last checkpoint is unchanged" in str(err.value)
    # 32 steps per update: step 100 falls in update 4, so updates 1-3 finished and were saved.
    assert agent.num_timesteps == 3 * 64
    assert len(read_metrics(tmp_path / "metrics.csv")) == 3
    saved = Agent.load(tmp_path / "checkpoints" / "last")
    assert saved.num_timesteps == 3 * 64
    assert torch.equal(_params(saved), _params(agent))
    agent.close()


def test_env_fault_on_the_command_line_exits_1_with_resume_hint(tmp_path, capsys):
    kwargs = json.dumps({"mode": "nan_obs", "fault_env": 0, "fault_step": 70, "base_seed": 0})
    rc = main(["train", "--env", _faulty_envs.ENV_ID, "--env-kwargs", kwargs, "--num-envs", "2",
               "--steps-per-env", "32", "--checkpoint-every", "1", "--run-dir", str(tmp_path),
               "--run-name", "r", "--no-progress", "--no-tensorboard", "--eval-episodes", "0",
               "--steps", "2048"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 1
    assert "environment 0 returned a non-finite observation at step 70" in err
    assert f"--resume {tmp_path / 'r'}" in err
    assert "Traceback" not in err
    assert load_checkpoint(tmp_path / "r" / "checkpoints" / "last")[1]["env_steps"] == 2 * 64


# -- numerical faults ---------------------------------------------------------------------------
def _nan_gradient(monkeypatch):
    real = steps_mod.flat_grad
    monkeypatch.setattr(steps_mod, "flat_grad", lambda *a, **k: torch.full_like(real(*a, **k), float("nan")))


def _cg_breakdown(monkeypatch):
    def breakdown(Av, b, **k):
        return CGResult(torch.zeros_like(b), float("nan"), 1, "breakdown")

    monkeypatch.setattr(curvature_mod, "conjugate_gradient", breakdown)


def _negative_curvature(monkeypatch):
    def solve(self, policy, batch, g):
        return curvature_mod.Solution(g.clone(), -float(g @ g), 0.0, 1)  # g̃ᵀFg̃ = -|g|² < 0

    monkeypatch.setattr(curvature_mod.NaturalDirection, "solve", solve)


def _line_search_failure(monkeypatch):
    kls = KLs(1.0, 1.0, 1.0)  # KL 1 > δ
    monkeypatch.setattr(steps_mod, "_evaluate", lambda policy, batch, s: (s.surr + 1.0, kls))


NUMERICAL = [
    ("trpo", _nan_gradient, "non-finite gradient"),
    ("npg", _nan_gradient, "non-finite gradient"),
    ("vpg", _nan_gradient, "non-finite gradient"),
    ("trpo", _cg_breakdown, "conjugate gradient breakdown"),
    ("npg", _cg_breakdown, "conjugate gradient breakdown"),
    ("trpo", _negative_curvature, "non-positive or non-finite g̃ᵀFg̃"),
    ("npg", _negative_curvature, "non-positive or non-finite g̃ᵀFg̃"),
    ("trpo", _line_search_failure, "line search found no step"),
]


@pytest.mark.parametrize("algo, inject, reason", NUMERICAL, ids=lambda x: getattr(x, "__name__", x))
def test_numerical_fault_skips_update_keeps_params_and_logs_reason(
    tmp_path, monkeypatch, algo, inject, reason
):
    agent = FACTORIES[algo]("CartPole-v1", seed=0, max_consecutive_skips=50, **SMALL)
    before = _params(agent)
    inject(monkeypatch)
    agent.learn(3 * 64, run_dir=tmp_path)
    assert torch.equal(_params(agent), before)
    rows = read_metrics(tmp_path / "metrics.csv")
    assert len(rows) == 3
    assert all(r["skipped"] == 1 and reason in r["skip_reason"] for r in rows)
    assert torch.isfinite(flat_params(agent.trainer.critic)).all()


def test_k_consecutive_skips_stop_the_run_clearly(tmp_path, monkeypatch):
    agent = TRPO("CartPole-v1", seed=0, max_consecutive_skips=3, checkpoint_every=1, **SMALL)
    _cg_breakdown(monkeypatch)
    with pytest.raises(TrainingFault, match=r"3 updates in a row were skipped \(last: conjugate gradient"):
        agent.learn(100_000, run_dir=tmp_path)
    rows = read_metrics(tmp_path / "metrics.csv")
    assert [r["update"] for r in rows] == [1, 2, 3]  # the update that stopped the run is logged too
    assert all(r["skipped"] == 1 for r in rows)
    Agent.load(tmp_path / "checkpoints" / "last")


def test_k_consecutive_skips_on_the_command_line_exit_1_naming_the_checkpoint(tmp_path, monkeypatch, capsys):
    """The CLI's side of a TrainingFault: one line on stderr, exit 1, the last checkpoint and the
    command that continues the run; the checkpoint it names loads."""
    _cg_breakdown(monkeypatch)
    run = tmp_path / "r"
    status = main(["train", "--env", "CartPole-v1", "--run-dir", str(tmp_path), "--run-name", "r",
                   "--num-envs", "2", "--steps-per-env", "32", "--steps", "100000", "--no-progress",
                   "--no-tensorboard", "--max-consecutive-skips", "3",
                   "--checkpoint-every", "1"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert status == 1
    assert err.count("\n") == 0 and err.startswith("trustpg: stopped: 3 updates in a row were skipped"), err
    last = run / "checkpoints" / "last.safetensors"
    assert f"Last checkpoint: {last} (continue with: trustpg train --resume {run})" in err
    Agent.load(last)


def test_a_good_update_resets_the_skip_count(monkeypatch):
    agent = TRPO("CartPole-v1", seed=0, max_consecutive_skips=2, **SMALL)
    real = curvature_mod.conjugate_gradient
    calls = {"n": 0}

    def every_other(Av, b, **k):
        calls["n"] += 1
        if calls["n"] % 2:
            return CGResult(torch.zeros_like(b), float("nan"), 1, "breakdown")
        return real(Av, b, **k)

    monkeypatch.setattr(curvature_mod, "conjugate_gradient", every_other)
    rows: list = []
    agent.learn(6 * 64, callback=rows.append)
    assert [r["skipped"] for r in rows] == [1, 0, 1, 0, 1, 0]


def test_non_finite_actor_after_a_step_is_restored(monkeypatch):
    agent = TRPO("CartPole-v1", seed=0, **SMALL)
    before = _params(agent)
    real = steps_mod.TRPO.update

    def poisoned(self, policy, batch):
        stats = real(self, policy, batch)
        with torch.no_grad():
            next(policy.parameters()).fill_(float("inf"))
        return stats

    monkeypatch.setattr(steps_mod.TRPO, "update", poisoned)
    rows: list = []
    agent.learn(64, callback=rows.append)
    assert torch.equal(_params(agent), before)
    assert rows[0]["skip_reason"] == "non-finite parameters after the step"


@pytest.mark.parametrize("mode", ["process", "thread", "sequential"])
def test_non_finite_critic_after_fitting_is_restored(monkeypatch, caplog, mode):
    kw = {"critic_overlap": mode != "sequential", "critic_process": mode == "process"}
    agent = TRPO("CartPole-v1", seed=0, **kw, **SMALL)
    critic_before = flat_params(agent.trainer.critic)

    def diverging_fit(critic, *a, **k):
        with torch.no_grad():
            for p in critic.parameters():
                p.fill_(float("nan"))
        return float("nan"), float("nan")

    monkeypatch.setattr(value_mod, "fit_value", diverging_fit)
    monkeypatch.setattr(value_mod, "apply_result", lambda critic, opt, reply: diverging_fit(critic))
    agent.learn(64)
    assert agent.trainer.critic_fit.process == (mode == "process")
    assert torch.equal(flat_params(agent.trainer.critic), critic_before)
    assert "critic restored" in caplog.text


# -- checkpoints --------------------------------------------------------------------------------
def _trained(tmp_path: Path) -> tuple[Agent, Path, torch.Tensor]:
    agent = TRPO("CartPole-v1", seed=0, **SMALL)
    agent.learn(64)
    path = agent.save(tmp_path / "last")
    return agent, path, _params(agent)


def _tmp_files(directory: Path) -> list[Path]:
    return [p for p in directory.iterdir() if ".tmp-" in p.name]


def test_writer_crashing_mid_write_leaves_previous_checkpoint(tmp_path, monkeypatch):
    agent, path, saved = _trained(tmp_path)
    agent.learn(64)
    assert not torch.equal(_params(agent), saved)

    class HalfThenFull(io.FileIO):  # the disk fills up half-way through the checkpoint
        def write(self, data):  # type: ignore[override]
            super().write(bytes(data)[: len(data) // 2])
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt_mod, "open", lambda path, mode: HalfThenFull(path, mode), raising=False)
    with pytest.raises(OSError, match="No space left"):
        agent.save(tmp_path / "last")
    assert torch.equal(_params(Agent.load(path)), saved)
    assert _tmp_files(tmp_path) == []


def test_rename_failing_leaves_previous_checkpoint(tmp_path, monkeypatch):
    agent, path, saved = _trained(tmp_path)
    agent.learn(64)

    def failing_replace(src, dst):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(ckpt_mod.os, "replace", failing_replace)
    with pytest.raises(OSError, match="Input/output error"):
        agent.save(tmp_path / "last")
    monkeypatch.undo()
    assert torch.equal(_params(Agent.load(path)), saved)
    assert _tmp_files(tmp_path) == []


@pytest.mark.parametrize("fraction", [0.0, 0.001, 0.01, 0.3, 0.6, 0.99])
def test_truncated_checkpoint_is_a_clear_error(tmp_path, fraction):
    _, path, _ = _trained(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(CheckpointError, match=r"not a readable checkpoint.*(truncated|bytes)") as err:
        Agent.load(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("where", ["header_length", "header", "tensor_data"])
def test_corrupt_checkpoint_is_a_clear_error(tmp_path, where):
    _, path, _ = _trained(tmp_path)
    data = bytearray(path.read_bytes())
    offset = {"header_length": 6, "header": 40, "tensor_data": len(data) - 3}[where]
    data[offset] ^= 0x5A
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"corrupt|not a readable|format") as err:
        Agent.load(path)
    assert str(path) in str(err.value)


def test_corrupt_checkpoint_on_the_command_line_is_one_line_exit_2(tmp_path, capsys):
    _, path, _ = _trained(tmp_path)
    path.write_bytes(path.read_bytes()[:100])
    assert main(["eval", str(path), "--episodes", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a readable checkpoint" in err and "Traceback" not in err


class _Payload:
    """Unpickling this calls open(marker, "w"): proof of code execution if the file appears."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("kind", ["pickle_v0", "pickle_v5", "torch_save"])
def test_pickle_in_place_of_a_checkpoint_is_refused_unexecuted(tmp_path, kind):
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(_Payload(control)))
    assert control.exists()  # the payload does execute when unpickled

    marker = tmp_path / "pwned"
    path = tmp_path / "checkpoints" / "last.safetensors"
    path.parent.mkdir()
    if kind == "torch_save":
        torch.save({"actor": _Payload(marker)}, path)
    else:
        path.write_bytes(pickle.dumps(_Payload(marker), protocol=0 if kind == "pickle_v0" else 5))
    with pytest.raises(CheckpointError):
        Agent.load(path)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    assert main(["eval", str(tmp_path), "--episodes", "1"]) == 2
    assert not marker.exists()


# -- interruption -------------------------------------------------------------------------------
def _train_process(run_dir: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "trustpg", "train", "--env", "CartPole-v1", "--num-envs", "2",
           "--steps-per-env", "64", "--run-dir", str(run_dir.parent), "--run-name", run_dir.name,
           "--no-progress", "--no-tensorboard", "--eval-episodes", "0", *extra]  # fmt: skip
    return subprocess.Popen(
        preexec_fn=as_from_a_terminal, args=cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _progressed(run: Path, rows_before: int) -> bool:
    return _rows(run) > rows_before and (run / "checkpoints" / "last.safetensors").exists()


@pytest.mark.parametrize(
    "sig, extra",
    [(signal.SIGINT, []), (signal.SIGTERM, []), (signal.SIGTERM, ["--workers", "2"])],
    ids=["SIGINT", "SIGTERM", "SIGTERM-ray-workers"],
)
def test_signal_finishes_update_checkpoints_and_exits_0(tmp_path, sig, extra):
    """With Ray rollout workers too: ``ray.init`` replaces the process's SIGTERM handler with one
    that exits at once (Ray's C++ core dumps a stack besides), so ``kill PID`` on such a run lost
    every update since its last periodic checkpoint and printed no way to continue. The run keeps
    its own handlers."""
    if extra:
        pytest.importorskip("ray")
    run = tmp_path / "run"
    proc = _train_process(run, *extra, "--steps", "10000000", "--checkpoint-every", "100000")
    try:
        _wait_for(lambda: _rows(run) >= 2 or proc.poll() is not None, "two updates")
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert f"Continue with: trustpg train --resume {run}" in out
    _, meta = load_checkpoint(run / "checkpoints" / "last")
    rows = read_metrics(run / "metrics.csv")
    assert meta["env_steps"] == rows[-1]["env_steps"] and meta["updates"] == len(rows) >= 2


def test_kill_9_at_random_moments_leaves_a_loadable_checkpoint_and_resume_works(tmp_path):
    rng = random.Random(0)
    run = tmp_path / "run"
    for attempt in range(3):
        extra = ["--resume", str(run)] if attempt else []
        proc = _train_process(run, "--steps", "10000000", "--checkpoint-every", "1", *extra)
        try:
            before = _rows(run)
            _wait_for(lambda b=before, p=proc: _progressed(run, b) or p.poll() is not None, "an update")
            time.sleep(rng.uniform(0.0, 0.5))
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
        finally:
            proc.kill()
        assert proc.returncode == -signal.SIGKILL
        tensors, meta = load_checkpoint(run / "checkpoints" / "last")
        assert meta["updates"] >= 1 and all(
            torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point()
        )
    # Resume to a fixed budget: rows logged after the last checkpoint are dropped, none repeat.
    _, meta = load_checkpoint(run / "checkpoints" / "last")
    target = (meta["updates"] + 2) * 128
    proc = _train_process(run, "--resume", str(run), "--steps", str(target))
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    updates = [int(r["update"]) for r in read_metrics(run / "metrics.csv")]
    assert updates == list(range(1, target // 128 + 1))
    leftovers = [p.name for p in (run / "checkpoints").iterdir() if p.name != "last.safetensors"]
    # Only our own temporary files of writes cut short by kill -9 (never read), no other litter:
    # safetensors 0.8's save_file left ".tmpXXXXXX" files (a CI run on record).
    assert all(re.fullmatch(r"\.last\.safetensors\.tmp-\d+", name) for name in leftovers), leftovers


@pytest.mark.parametrize("first_bytes", [b"\x80", b"PK"])
def test_checkpoint_whose_header_length_looks_like_pickle_magic_still_loads(tmp_path, first_bytes):
    """Regression (found by hypothesis): a header of 128 (0x80) bytes, or 0x4B50 = 'PK', is legal."""
    tensors = {"w": torch.arange(3.0)}
    wanted = int.from_bytes(first_bytes, "little")
    modulus = 256 ** len(first_bytes)
    base = int.from_bytes(
        ckpt_mod.save_checkpoint(tmp_path / "c", tensors, {"pad": ""}).read_bytes()[:8], "little"
    )
    guess = (wanted - base) % modulus  # the header grows by one byte per padding character
    for pad in range(max(guess - 8, 0), guess + 9):
        path = ckpt_mod.save_checkpoint(tmp_path / "c", tensors, {"pad": "x" * pad})
        if path.read_bytes().startswith(first_bytes):
            break
    else:
        pytest.fail("no padding gave the wanted first bytes")
    loaded, meta = load_checkpoint(path)
    assert torch.equal(loaded["w"], tensors["w"]) and meta["pad"] == "x" * pad
