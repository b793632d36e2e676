"""``trustpg train --seeds``: one run directory per seed, trained in parallel worker processes, one
mean ± std table; bad values refused in one line; Ctrl-C stops every run with a checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from _runs import as_from_a_terminal, rows, wait_for

from trustpg.app.cli import main

TINY = ["--steps", "1024", "--num-envs", "2", "--steps-per-env", "512", "--eval-episodes", "2"]


def test_seeds_make_one_run_each_and_one_table(tmp_path, capsys):
    assert main(["train", "--seeds", "0", "1", "2", *TINY, "--run-dir", str(tmp_path), "--jobs", "2"]) == 0
    runs = sorted(tmp_path.iterdir())
    assert [r.name.split("__")[:3] for r in runs] == [["CartPole-v1", "trpo", f"s{s}"] for s in range(3)]
    assert len({r.name.split("__")[3] for r in runs}) == 1  # one time stamp for the whole command
    for seed, run in enumerate(runs):
        assert json.loads((run / "config.json").read_text())["seed"] == seed
        assert "eval_mean" in json.loads((run / "summary.json").read_text())
    out = capsys.readouterr().out
    assert out.count("| env | algo | seeds |") == 1
    assert "| CartPole-v1 | TRPO | 3 |" in out


def test_seeds_with_a_run_name(tmp_path):
    assert main(["train", "--seeds", "4", "7", *TINY, "--run-dir", str(tmp_path), "--run-name", "x"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x__s4", "x__s7"]
    # the same names again: refused before anything starts, the runs are untouched
    assert main(["train", "--seeds", "4", "7", *TINY, "--run-dir", str(tmp_path), "--run-name", "x"]) == 2


@pytest.mark.parametrize(
    "args, message",
    [
        (["--seeds"], "--seeds needs one or more seeds"),
        (["--seeds", "0", "x"], "--seeds 'x' is not an integer"),
        (["--seeds", "1", "1"], "a seed is repeated"),
        (["--seeds", "-3"], "--seeds -3 is invalid: must be in [0, 4294967295]"),
        (["--seeds", "0", "--seed", "1"], "cannot be combined with --seed"),
        (["--seeds", "0", "--resume", "runs/x"], "cannot be combined with --resume"),
        (["--seeds", "0", "--jobs", "0"], "--jobs 0 is invalid"),
        (["--seeds", "0", "--jobs"], "argument --jobs: expected one argument"),
        (["--seeds", "0", "--env", "CartPol-v1"], "Did you mean CartPole-v1"),
        (["--seeds", "0", "--max-kl", "-1"], "max_kl=-1.0"),
    ],
)
def test_bad_seeds_input_is_one_line_exit_2_and_creates_nothing(tmp_path, capsys, args, message):
    assert main(["train", *args, "--run-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def _two_seeds_signalled(tmp_path, steps: int, preexec) -> tuple[subprocess.Popen, str, str]:
    """``trustpg train --seeds 0 1`` started with ``preexec``, SIGINT sent to its process group (as a
    terminal's Ctrl-C) once both runs made two updates; returns the process and its output."""
    cmd = [sys.executable, "-m", "trustpg", "train", "--seeds", "0", "1", "--jobs", "2", "--steps",
           str(steps), "--num-envs", "2", "--steps-per-env", "256", "--run-dir", str(tmp_path),
           "--no-progress", "--eval-episodes", "0"]  # fmt: skip
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=preexec)  # fmt: skip
    try:
        wait_for(lambda: len(list(tmp_path.iterdir())) == 2 and all(rows(r) >= 2 for r in tmp_path.iterdir()),
                 "both runs' second update")  # fmt: skip
        os.killpg(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc, stdout, stderr


def test_ctrl_c_stops_every_seed_with_a_checkpoint(tmp_path):
    """A terminal's Ctrl-C (SIGINT to the process group) reaches the command, which passes it to
    each run once: every run checkpoints, the command lists them and exits 130."""
    proc, stdout, stderr = _two_seeds_signalled(tmp_path, 10_000_000, as_from_a_terminal)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    for run in tmp_path.iterdir():
        assert (run / "checkpoints" / "last.safetensors").is_file()
        assert f"trustpg train --resume {run}" in stdout
    assert "incomplete: 0 of 2 finished" in stdout


def _sigint_ignored() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def test_seeds_started_with_sigint_ignored_train_to_the_end(tmp_path):
    """A background job (``trustpg train --seeds … &`` from a script, ``nohup``) starts with SIGINT
    ignored: the terminal's Ctrl-C is not for it, neither for the command nor for its runs."""
    proc, stdout, stderr = _two_seeds_signalled(tmp_path, 6144, _sigint_ignored)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr and "interrupted" not in stdout + stderr
    for run in tmp_path.iterdir():
        assert (run / "summary.json").is_file() and rows(run) == 12
