"""The command line end to end on tiny budgets, in temporary directories."""

from __future__ import annotations

import json
import subprocess
import sys

import mujoco
import numpy as np
import pytest
import torch

from trustpg import TRPO, Agent
from trustpg.app.cli import main
from trustpg.io.logger import COLUMNS, read_metrics


def test_train_eval_and_load_from_python(tmp_path, capsys):
    rc = main(["train", "--algo", "trpo", "--env", "CartPole-v1", "--steps", "4000", "--seed", "0",
               "--run-dir", str(tmp_path), "--run-name", "r", "--eval-episodes", "2",
               "--no-progress"])  # fmt: skip
    assert rc == 0
    run = tmp_path / "r"
    config = json.loads((run / "config.json").read_text())
    assert config["algo"] == "trpo" and config["steps"] == 4000
    rows = read_metrics(run / "metrics.csv")
    assert len(rows) == 2  # 2 updates of 8 x 256 steps
    assert list(rows[0]) == COLUMNS
    assert rows[-1]["env_steps"] == 4096
    assert any(p.name.startswith("events.out.tfevents") for p in (run / "tb").iterdir())
    ckpt = run / "checkpoints" / "last.safetensors"
    # A safetensors file (an 8-byte header length, then a JSON header), not a pickle or a torch zip;
    # its first byte alone says nothing: a header length such as 0x...80 is legal (test_faults.py).
    blob = ckpt.read_bytes()
    header = json.loads(blob[8 : 8 + int.from_bytes(blob[:8], "little")])
    assert "__metadata__" in header and all("dtype" in v for k, v in header.items() if k != "__metadata__")
    capsys.readouterr()
    assert main(["eval", str(run), "--episodes", "3"]) == 0
    out = capsys.readouterr().out
    assert "±" in out and "3 episodes" in out

    agent = TRPO.load(ckpt)
    assert agent.num_timesteps == 4096
    obs = np.zeros(4, dtype=np.float32)
    assert agent.predict(obs) in (0, 1)
    again = Agent.load(run / "checkpoints" / "last")
    assert np.array_equal(again.predict(np.ones((5, 4))), agent.predict(np.ones((5, 4))))


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--env", "CartPol-v1"], "Did you mean CartPole-v1"),
        (["train", "--max-kl", "-1"], "max_kl=-1.0"),
        (["train", "--env-kwargs", "[1"], "env_kwargs must be a JSON object"),
        (["train", "--env", "Blackjack-v1", "--steps", "10"], "unsupported observation space"),
        (["eval", "/nonexistent/run"], "no checkpoint"),
        (["frobnicate"], "unknown command"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert err.count("\n") == 1


def test_console_script_runs(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "trustpg", "train", "--steps", "2048", "--num-envs", "2",
         "--steps-per-env", "1024", "--run-dir", str(tmp_path), "--run-name", "x",
         "--eval-episodes", "1"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "evaluation over 1 episodes" in out.stdout


@pytest.mark.parametrize("env", ["Hopper-v5", "HalfCheetah-v5"])
def test_mujoco_preset_trains_a_few_thousand_steps(tmp_path, env):
    rc = main(["train", "--preset", "mujoco", "--env", env, "--steps", "4096", "--run-dir",
               str(tmp_path), "--run-name", "m", "--eval-episodes", "1", "--no-progress"])  # fmt: skip
    assert rc == 0
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    # the preset was applied, with its per-env part (Hopper: γ 0.995, HalfCheetah: 16 envs)
    assert config["normalize_reward"] is True and config["cg_iters"] == 25
    assert (config["gamma"], config["num_envs"]) == ((0.995, 8) if env == "Hopper-v5" else (0.99, 16))
    rows = read_metrics(tmp_path / "m" / "metrics.csv")
    assert rows[-1]["env_steps"] >= 4096
    assert all(r["measured_kl"] <= config["max_kl"] + 1e-9 for r in rows if not r["skipped"])
    summary = json.loads((tmp_path / "m" / "summary.json").read_text())
    assert np.isfinite(summary["eval_mean"])
    # the footprint includes the critic worker's own peak (a NumPy process: tens of MB)
    assert 5 < summary["peak_rss_critic_worker_mb"] < 120
    assert summary["peak_rss_mb"] > summary["peak_rss_critic_worker_mb"] + 100
    # the stack that made the number (a MuJoCo release alone moves a seeded run)
    assert summary["software"]["torch"] == torch.__version__
    assert summary["software"]["mujoco"] == mujoco.__version__
