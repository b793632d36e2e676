"""``trustpg tune`` end to end on CartPole with a tiny budget: results, resume from the SQLite study
(after a rerun with more trials, and after a Ctrl-C), the best config rerun by ``train --config``,
and bad search-space files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tomllib

import pytest
from _runs import as_from_a_terminal, rows, wait_for

from trustpg.app.cli import main

optuna = pytest.importorskip("optuna")

#: A small space over small batches, so that a trial of 2048 steps takes about a second.
SPACE = """
replace = true
[max_kl]
type = "float"
low = 0.005
high = 0.05
log = true
[gamma]
type = "categorical"
choices = [0.98, 0.99]
[num_envs]
type = "categorical"
choices = [2, 4]
[steps_per_env]
type = "fixed"
value = 256
"""


def tune_args(tmp_path, trials, steps=2048):
    space = tmp_path / "space.toml"
    space.write_text(SPACE)
    return ["tune", "--env", "CartPole-v1", "--trials", str(trials), "--steps", str(steps),
            "--space", str(space), "--out", str(tmp_path / "tune"), "--evals", "2",
            "--eval-episodes", "2"]  # fmt: skip


def study(tmp_path):
    return optuna.load_study(study_name="tune", storage=f"sqlite:///{tmp_path / 'tune' / 'study.db'}")


def test_tune_writes_results_resumes_and_its_best_config_trains_again(tmp_path, capsys):
    assert main(tune_args(tmp_path, 2)) == 0
    out = tmp_path / "tune"
    trials = study(tmp_path).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    first = {t.number: (out / f"trial_{t.number:04d}" / "summary.json").stat().st_mtime_ns for t in trials}
    printed = capsys.readouterr().out
    assert "| trial | state | value |" in printed and "best: trial" in printed
    assert len((out / "trials.csv").read_text().splitlines()) == 3  # header + 2 trials
    assert (out / "trials.md").read_text().count("| complete |") == 2

    # the same command asking for 3 trials in all runs one more and recomputes nothing
    assert main(tune_args(tmp_path, 3)) == 0
    trials = study(tmp_path).trials
    assert len(trials) == 3 and all(t.state.name == "COMPLETE" for t in trials)
    assert "0 of 3 trials done" not in capsys.readouterr().out
    for number, mtime in first.items():
        assert (out / f"trial_{number:04d}" / "summary.json").stat().st_mtime_ns == mtime
    assert main(tune_args(tmp_path, 3)) == 0  # nothing left to do
    assert len(study(tmp_path).trials) == 3

    # best.toml reruns the best trial: same config, and (deterministic training) the same result
    best = max(trials, key=lambda t: t.value)
    best_file = out / "best.toml"
    assert tomllib.loads(best_file.read_text())["max_kl"] == best.params["max_kl"]
    again = tmp_path / "again"
    assert main(["train", "--config", str(best_file), "--run-dir", str(again), "--run-name", "r",
                 "--no-progress"]) == 0  # fmt: skip
    trial_run = out / f"trial_{best.number:04d}"
    want = json.loads((trial_run / "config.json").read_text())
    got = json.loads((again / "r" / "config.json").read_text())
    differ = {k for k in want if want[k] != got.get(k)}
    assert differ <= {"run_dir", "run_name", "eval_every", "progress"}
    summary = json.loads((again / "r" / "summary.json").read_text())
    assert summary["eval_mean"] == pytest.approx(best.value)


def _stopped_after_two_updates(args, trial, stop):
    """``trustpg tune ARGS`` in its own session, as from a terminal; ``stop(proc)`` once ``trial``
    has logged two updates. Returns the process and its output."""
    proc = subprocess.Popen(
        preexec_fn=as_from_a_terminal, args=[sys.executable, "-m", "trustpg", *args], start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        wait_for(lambda: rows(trial) >= 2, "the first trial's second update")
        stop(proc)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return proc, stdout, stderr


def test_tune_resumes_after_ctrl_c(tmp_path):
    """Ctrl-C (to the whole process group, as a terminal sends it) stops the trial after its update
    with a checkpoint; the same command then finishes the tune, trying that trial again."""
    args = tune_args(tmp_path, 2, steps=30_000)
    trial0 = tmp_path / "tune" / "trial_0000"
    proc, stdout, stderr = _stopped_after_two_updates(args, trial0, lambda p: os.killpg(p.pid, signal.SIGINT))
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "Continue with: trustpg tune" in stdout
    assert (trial0 / "checkpoints" / "last.safetensors").is_file()
    (interrupted,) = study(tmp_path).trials
    assert interrupted.state.name == "FAIL" and interrupted.user_attrs["interrupted"]

    assert main(args) == 0
    trials = study(tmp_path).trials
    assert [t.state.name for t in trials].count("COMPLETE") == 2
    retry = next(t for t in trials if t.user_attrs.get("retry_of") == 0)
    assert retry.params == interrupted.params


@pytest.mark.parametrize("workers", [[], ["--workers", "2"]], ids=["processes", "ray"])
def test_sigterm_stops_the_tune_as_ctrl_c_does(tmp_path, workers):
    """``kill PID`` (a scheduler's stop) on the tune process: its running trial finishes its update
    and checkpoints, and the tune says how to continue. With Ray tasks it was killed on the spot
    (``ray.init`` replaces the SIGTERM handler with one that exits at once)."""
    if workers:
        pytest.importorskip("ray")
    args = [*tune_args(tmp_path, 2, steps=1_000_000), *workers]
    trial0 = tmp_path / "tune" / "trial_0000"
    proc, stdout, stderr = _stopped_after_two_updates(args, trial0, lambda p: p.send_signal(signal.SIGTERM))
    assert proc.returncode == 130, stderr
    assert "Continue with: trustpg tune" in stdout
    assert (trial0 / "checkpoints" / "last.safetensors").is_file()
    interrupted = [t for t in study(tmp_path).trials if t.user_attrs.get("interrupted")]
    assert interrupted and all(t.state.name == "FAIL" for t in interrupted)


@pytest.mark.parametrize(
    "space, message",
    [
        ("[max_kl\n", "invalid TOML"),
        ('[max_kll]\ntype = "float"\nlow = 0.01\nhigh = 0.1\n', "max_kll is not a TrainConfig field"),
        ('[max_kl]\ntype = "float"\nlow = 0.1\nhigh = 0.01\n', "needs low < high"),
        ('[max_kl]\ntype = "float"\nlow = 0.0\nhigh = 0.1\nlog = true\n', "low must be > 0"),
        ('[gamma]\ntype = "categorical"\nchoices = [0.99, 1.5]\n', "gamma=1.5 is not a valid value"),
        ('[gamma]\ntype = "uniform"\nlow = 0.9\nhigh = 0.99\n', "gamma.type must be one of"),
        ('[seed]\ntype = "int"\nlow = 0\nhigh = 9\n', "set by trustpg tune itself"),
    ],
)
def test_bad_search_space_is_one_line_exit_2_and_creates_nothing(tmp_path, capsys, space, message):
    path = tmp_path / "space.toml"
    path.write_text(space)
    assert main(["tune", "--space", str(path), "--out", str(tmp_path / "tune"), "--trials", "1"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "tune").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--trials", "0"], "--trials must be >= 1"),
        (["--workers", "2", "--jobs", "2"], "not both"),
        (["--ray-address", "auto"], "--ray-address needs --workers N"),
        (["--workers", "2", "--ray-address", "auto"], "cannot share a SQLite file"),
        (["--algo", "ppo"], "argument --algo: invalid choice: 'ppo'"),
        (["--seed", "1", "--run-name", "x"], "trustpg tune sets --run-name itself"),
        (["--space", "/nonexistent/space.toml"], "--space /nonexistent/space.toml: no such file"),
        (["--env", "CartPol-v1"], "CartPol-v1"),
    ],
)
def test_bad_tune_arguments_are_one_line_exit_2(tmp_path, capsys, args, message):
    assert main(["tune", "--out", str(tmp_path / "tune"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "tune").exists()


def test_without_optuna_tune_says_what_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna now raises ImportError
    assert main(["tune", "--out", str(tmp_path / "tune"), "--trials", "1"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'trustpg[tune]'" in err and err.count("\n") == 1
    assert not (tmp_path / "tune").exists()


def test_trials_as_ray_tasks(tmp_path, capsys):
    """--workers: the tune processes run as Ray tasks on a local Ray instance, same study and results."""
    pytest.importorskip("ray")
    assert main([*tune_args(tmp_path, 3), "--workers", "2"]) == 0
    trials = study(tmp_path).trials
    assert len(trials) == 3 and all(t.state.name == "COMPLETE" for t in trials)
    assert (tmp_path / "tune" / "best.toml").is_file()
    assert "best: trial" in capsys.readouterr().out
