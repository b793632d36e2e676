"""Progress in a redirected log (nohup, CI): plain lines, not silence and not terminal codes."""

from __future__ import annotations

import subprocess
import sys


def test_train_into_a_pipe_prints_plain_progress_lines(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "trustpg", "train", "--env", "CartPole-v1", "--steps", "2048",
         "--num-envs", "2", "--steps-per-env", "256", "--run-dir", str(tmp_path), "--run-name", "r",
         "--no-tensorboard", "--eval-episodes", "1"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stdout.splitlines() if line.startswith("train ")]
    assert lines, out.stdout
    last = lines[-1]
    assert last.startswith("train 2,048/2,048 steps (100%) | return ") and "| KL " in last
    assert "steps/s | elapsed 0:" in last and "| left 0:00:00" in last
    assert "\x1b[" not in out.stdout  # no cursor movement or colour codes in a log file
