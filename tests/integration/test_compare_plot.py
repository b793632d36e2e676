"""``trustpg compare`` and ``trustpg plot`` as a user meets them: a terminal's Ctrl-C stops the whole
comparison and a rerun completes it; a rerun with other hyperparameters is refused instead of
reusing runs made with the old ones; runs made with different configs are separate lines.
Tiny budgets (CartPole, 2 envs × 64 steps per update)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from _runs import as_from_a_terminal

from trustpg.app.cli import main
from trustpg.io.plotting import aggregate

TINY = [
    "--num-envs",
    "2",
    "--steps-per-env",
    "64",
    "--eval-episodes",
    "1",
    "--no-tensorboard",
    "--no-progress",
]


def _rows(path: Path) -> int:
    return max(len(path.read_text().splitlines()) - 1, 0) if path.is_file() else 0


def test_ctrl_c_stops_the_whole_compare_and_rerunning_it_completes_it(tmp_path):
    out = tmp_path / "cmp"
    cmd = [sys.executable, "-m", "trustpg", "compare", "--algos", "vpg,trpo", "--seeds", "1",
           "--steps", str(64 * 128), "--out", str(out), *TINY]  # fmt: skip
    first, later = out / "CartPole-v1__vpg__s0", out / "CartPole-v1__trpo__s0"
    # its own session, so that the signal below reaches compare's process group (and only it),
    # as a terminal's Ctrl-C reaches every process of the foreground job
    proc = subprocess.Popen(
        preexec_fn=as_from_a_terminal, args=cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, cwd=tmp_path)  # fmt: skip
    try:
        deadline = time.monotonic() + 120  # only stops a hung test; asserts nothing about speed
        while _rows(first / "metrics.csv") < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proc.poll() is None, f"compare ended before Ctrl-C: {proc.communicate()}"
        os.killpg(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert "interrupted at" in stdout, f"the run was not interrupted: {stdout}{stderr}"
    assert not later.exists(), "compare went on to the next run after Ctrl-C"
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr, stderr
    assert not (first / "summary.json").exists()
    assert (first / "checkpoints" / "last.safetensors").is_file()
    assert "compare interrupted: 0 of 2 runs finished" in stdout
    assert f"{first.name}: incomplete" in stdout and f"{later.name}: not started" in stdout
    assert "Continue with the same command" in stdout
    table = (out / "summary.md").read_text()
    assert "| CartPole-v1 | VPG | incomplete: 0 of 1 finished | — | — |" in table, table
    assert not (out / "curves.png").exists()

    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert f"resuming {first}" in rerun.stdout  # continued from its checkpoint, not restarted
    assert all((r / "summary.json").is_file() for r in (first, later))
    table = (out / "summary.md").read_text()
    assert "incomplete" not in table and "| CartPole-v1 | VPG | 1 |" in table, table
    assert (out / "curves.png").is_file()


def test_compare_refuses_runs_made_with_other_hyperparameters(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "cmp"

    def compare(where: Path, *extra: str) -> list[str]:
        return [
            "compare",
            "--algos",
            "trpo",
            "--seeds",
            "1",
            "--steps",
            "256",
            "--out",
            str(where),
            *TINY,
            *extra,
        ]

    base = compare(out)
    run = out / "CartPole-v1__trpo__s0"
    assert main(base) == 0
    summary, config = (out / "summary.md").read_bytes(), (run / "config.json").read_bytes()
    capsys.readouterr()

    assert main([*base, "--max-kl", "0.02"]) == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        f"trustpg: error: {run} was made with max_kl=0.01, this compare asks max_kl=0.02; "
        "use another --out or delete it"
    ]
    assert "reused" not in captured.out and "training" not in captured.out
    assert (out / "summary.md").read_bytes() == summary and (run / "config.json").read_bytes() == config

    # settings that do not change results (display, threads) still reuse the run
    assert main([*base, "--progress", "--torch-threads", "2"]) == 0
    assert "done, reused" in capsys.readouterr().out

    # an interrupted run (checkpoint, no summary.json) is not resumed with another config either
    (run / "summary.json").unlink()
    metrics = (run / "metrics.csv").read_bytes()
    assert main([*base, "--gamma", "0.9", "--vf-epochs", "3"]) == 2
    err = capsys.readouterr().err
    assert "was made with gamma=0.99, vf_epochs=5, this compare asks gamma=0.9, vf_epochs=3" in err
    assert (run / "metrics.csv").read_bytes() == metrics and not (run / "summary.json").exists()

    # the other config in its own --out; plot shows the two configs as two lines, not one
    assert main(compare(tmp_path / "cmp2", "--max-kl", "0.02")) == 0
    assert main(base) == 0  # resumes the first run (0 steps to go), evaluates it, summarises
    capsys.readouterr()
    assert main(["plot", str(out), str(tmp_path / "cmp2"), "--out", str(tmp_path / "both.png")]) == 0
    assert (tmp_path / "both.png").is_file()
    lines = aggregate([out, tmp_path / "cmp2"])  # (env, line) → (x, mean, std, n)
    assert sorted((k, n) for k, (_, _, _, n) in lines.items()) == [
        (("CartPole-v1", "trpo max_kl=0.01"), 1),
        (("CartPole-v1", "trpo max_kl=0.02"), 1),
    ]
    assert json.loads((run / "summary.json").read_text())["env_steps"] == 256
