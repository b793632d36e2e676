"""The run directory loses nothing (issue 18 §3, §4): atomic config.json, directories that are not
runs, a first checkpoint that failed, ``--resume`` that would change the run, a checkpoint from
another run, a full disk. Each test drives ``trustpg train`` as a user does (``cli.main``)."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import pytest

import trustpg.io.rundir as rundir_mod
import trustpg.train.agent as agent_mod
from trustpg.app.cli import main
from trustpg.io.checkpoint import load_checkpoint
from trustpg.io.logger import MetricsLogger, read_metrics

FAST = [
    "--num-envs",
    "2",
    "--steps-per-env",
    "64",
    "--no-progress",
    "--no-tensorboard",
    "--eval-episodes",
    "0",
]


def _train(tmp_path: Path, name: str, *extra: str) -> int:
    return main(["train", "--run-dir", str(tmp_path), "--run-name", name, *FAST, *extra])


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def _disk_full(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_config_json_write_failure_leaves_the_old_file_and_resume_works(tmp_path, monkeypatch, capsys):
    run = tmp_path / "r"
    assert _train(tmp_path, "r", "--steps", "256") == 0
    before = (run / "config.json").read_bytes()
    # the disk fills while config.json is rewritten at the start of a resume: half the text, then
    # ENOSPC (a direct write_text leaves it truncated; the atomic write never touches the old file)
    real_write_text = Path.write_text

    def half_then_full(self, data, *a, **k):
        real_write_text(self, data[: len(data) // 2], *a, **k)
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_text", half_then_full)
    monkeypatch.setattr(rundir_mod.os, "fsync", _disk_full)
    assert main(["train", "--resume", str(run), "--steps", "512"]) == 1
    assert "No space left on device" in _one_error_line(capsys)
    monkeypatch.undo()
    assert (run / "config.json").read_bytes() == before
    assert not [p for p in run.iterdir() if ".tmp-" in p.name]
    assert main(["train", "--resume", str(run), "--steps", "512"]) == 0
    assert json.loads((run / "config.json").read_text())["steps"] == 512


def test_a_damaged_config_json_does_not_block_resume(tmp_path, capsys):
    run = tmp_path / "r"
    assert _train(tmp_path, "r", "--steps", "256") == 0
    (run / "config.json").write_text('{"algo": "trp')  # truncated by some earlier tool
    assert main(["train", "--resume", str(run), "--steps", "512"]) == 0  # the checkpoint's config
    assert json.loads((run / "config.json").read_text())["env"] == "CartPole-v1"


def test_a_directory_that_is_not_a_run_is_never_overwritten(tmp_path, capsys):
    (tmp_path / "thesis").mkdir()
    (tmp_path / "thesis" / "chapter1.tex").write_text("precious")
    assert _train(tmp_path, "thesis", "--steps", "256") == 2
    assert "not a trustpg run" in _one_error_line(capsys)
    assert sorted(p.name for p in (tmp_path / "thesis").iterdir()) == ["chapter1.tex"]


def test_a_run_with_a_checkpoint_is_continued_only_with_resume(tmp_path, capsys):
    assert _train(tmp_path, "r", "--steps", "256") == 0
    rows = (tmp_path / "r" / "metrics.csv").read_bytes()
    assert _train(tmp_path, "r", "--steps", "256") == 2
    assert "--resume" in _one_error_line(capsys)
    assert (tmp_path / "r" / "metrics.csv").read_bytes() == rows


@pytest.mark.parametrize("again", ["the same command", "--resume"])
def test_a_failed_first_checkpoint_is_not_a_dead_end(tmp_path, monkeypatch, capsys, again):
    monkeypatch.setattr(agent_mod, "save_checkpoint", _disk_full)
    assert _train(tmp_path, "r", "--steps", "512") == 1
    assert "No space left on device" in _one_error_line(capsys)
    monkeypatch.undo()
    run = tmp_path / "r"
    assert (run / "config.json").is_file() and not (run / "checkpoints" / "last.safetensors").exists()
    if again == "--resume":
        assert main(["train", "--resume", str(run)]) == 0  # starts it from the beginning
        assert "no checkpoint yet" in capsys.readouterr().out
    else:
        assert _train(tmp_path, "r", "--steps", "512") == 0
        assert "never wrote a checkpoint: starting it again" in capsys.readouterr().out
    assert [int(r["update"]) for r in read_metrics(run / "metrics.csv")] == [1, 2, 3, 4]


@pytest.mark.parametrize("written", ["nothing", "half a row"])
def test_disk_full_while_logging_stops_with_one_line_and_keeps_the_checkpoint(
    tmp_path, monkeypatch, capsys, written
):
    real_write = MetricsLogger.write

    def write(self, row):
        if row["update"] == 3:
            if written == "half a row":  # the disk filled in the middle of the line
                self._file.write("3,384,12,9.5,")
                self._file.flush()
            _disk_full()
        real_write(self, row)

    monkeypatch.setattr(MetricsLogger, "write", write)
    assert _train(tmp_path, "r", "--steps", "1024", "--checkpoint-every", "1") == 1
    assert "No space left on device" in _one_error_line(capsys)
    _, meta = load_checkpoint(tmp_path / "r" / "checkpoints" / "last")
    assert meta["updates"] == 2
    monkeypatch.undo()
    assert main(["train", "--resume", str(tmp_path / "r")]) == 0
    rows = read_metrics(tmp_path / "r" / "metrics.csv")
    assert [int(r["update"]) for r in rows] == list(range(1, 9))
    assert all(isinstance(r["mean_return"], float) for r in rows)  # no row glued to a half one


#: A change of each field of trustpg.app.run.IDENTITY on a CartPole run (action_dist: a Box-action
#: run, test_resume_refuses_another_action_distribution_...).
IDENTITY_CHANGES = {
    "algo": ["--algo", "npg"],
    "env": ["--env", "Acrobot-v1"],
    "env_kwargs": ["--env-kwargs", '{"sutton_barto_reward": true}'],
    "train_time_limit": ["--train-time-limit", "50"],
    "seed": ["--seed", "3"],
    "hidden_sizes": ["--hidden-sizes", "32", "32"],
    "vf_hidden_sizes": ["--vf-hidden-sizes", "16"],
    "activation": ["--activation", "relu"],
    "num_envs": ["--num-envs", "4"],
    "normalize_obs": ["--no-normalize-obs"],
    "normalize_reward": ["--normalize-reward"],
    "vpg_optimizer": ["--vpg-optimizer", "adam"],
    "policy": ["--policy", "gru"],
    "normalize_images": ["--normalize-images"],
    "cnn_dense_sizes": ["--cnn-dense-sizes", "32"],
}


def test_every_identity_field_has_a_resume_case():
    from trustpg.app.run import IDENTITY

    assert set(IDENTITY) == {*IDENTITY_CHANGES, "action_dist"}


@pytest.mark.parametrize("field", list(IDENTITY_CHANGES))
def test_resume_that_would_change_the_run_is_one_line_and_changes_nothing(tmp_path, capsys, field):
    flags = IDENTITY_CHANGES[field]
    run = tmp_path / "r"
    assert _train(tmp_path, "r", "--steps", "256") == 0
    files = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--steps", "512", *flags]) == 2
    line = _one_error_line(capsys)
    assert f"made with {field}=" in line and "another run" in line
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == files


def test_a_checkpoint_from_another_run_is_refused_and_the_metrics_are_kept(tmp_path, capsys):
    assert _train(tmp_path, "cart", "--steps", "1024") == 0
    assert _train(tmp_path, "pend", "--steps", "256", "--env", "Pendulum-v1") == 0
    cart = tmp_path / "cart"
    rows = (cart / "metrics.csv").read_bytes()
    shutil.copy(
        tmp_path / "pend" / "checkpoints" / "last.safetensors", cart / "checkpoints" / "last.safetensors"
    )
    capsys.readouterr()
    assert main(["train", "--resume", str(cart), "--steps", "2048"]) == 2
    line = _one_error_line(capsys)
    assert "belongs to another run" in line and "Pendulum-v1" in line and "CartPole-v1" in line
    assert (cart / "metrics.csv").read_bytes() == rows


@pytest.mark.parametrize("target", ["file", "file_parent"])
def test_a_run_dir_that_is_a_file_is_one_line_and_creates_nothing(tmp_path, capsys, target):
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    run_dir = blocker if target == "file" else blocker / "sub"
    assert main(["train", "--run-dir", str(run_dir), "--run-name", "r", *FAST, "--steps", "256"]) == 2
    assert "not a directory" in _one_error_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker"]


@pytest.mark.parametrize("how", ["mode 555", "read-only mount"])
def test_a_run_dir_that_cannot_be_written_is_one_line_and_creates_nothing(tmp_path, capsys, monkeypatch, how):
    """A directory without write permission (not a limit for root, so skipped as root) and one on
    a read-only file system (EROFS holds for root too; simulated: os.access says no, as it does)."""
    locked_dir = tmp_path / "ro"
    locked_dir.mkdir()
    if how == "mode 555":
        if os.geteuid() == 0:
            pytest.skip("root writes whatever the mode")
        locked_dir.chmod(0o555)
    else:
        real = os.access
        monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != locked_dir and real(path, mode))
    try:
        status = main(
            ["train", "--run-dir", str(locked_dir / "runs"), "--run-name", "r", *FAST, "--steps", "256"]
        )
        assert status == 2
        assert f"{locked_dir} is not writable" in _one_error_line(capsys)
        assert list(locked_dir.iterdir()) == []
    finally:
        locked_dir.chmod(0o755)


def test_a_run_name_file_systems_refuse_is_one_line(tmp_path, capsys):
    assert _train(tmp_path, "x" * 300, "--steps", "256") == 2
    assert "shorter --run-name" in _one_error_line(capsys)
    assert list(tmp_path.iterdir()) == []


def test_the_python_api_leaves_a_run_directory_the_command_line_accepts(tmp_path, capsys):
    import torch

    from trustpg import TRPO

    run = tmp_path / "api"
    torch.set_num_threads(2)
    agent = TRPO("CartPole-v1", seed=0, num_envs=2, steps_per_env=64, progress=False, tensorboard=False)
    agent.learn(256, run_dir=run)
    assert torch.get_num_threads() == 2  # the run used torch_threads=1 and gave the caller's back
    agent.close()
    assert json.loads((run / "config.json").read_text())["env"] == "CartPole-v1"
    assert json.loads((run / "summary.json").read_text())["env_steps"] == 256
    assert main(["eval", str(run), "--episodes", "1"]) == 0
    assert main(["plot", str(run), "--out", str(tmp_path / "c.png")]) == 0
    assert main(["train", "--resume", str(run), "--steps", "512"]) == 0
    assert [int(r["update"]) for r in read_metrics(run / "metrics.csv")] == [1, 2, 3, 4]
    fresh = TRPO("CartPole-v1", seed=1, num_envs=2, steps_per_env=64, progress=False, tensorboard=False)
    with pytest.raises(ValueError, match="already holds a run"):
        fresh.learn(128, run_dir=run)  # a new agent never writes over a run with a checkpoint
    fresh.close()


def test_resume_refuses_another_action_distribution_and_accepts_a_config_older_than_a_field(tmp_path, capsys):
    assert _train(tmp_path, "p", "--env", "Pendulum-v1", "--steps", "256") == 0
    run = tmp_path / "p"
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--steps", "512", "--action-dist", "beta"]) == 2
    line = _one_error_line(capsys)
    assert "action_dist='gaussian'" in line and "action_dist='beta'" in line
    # A run saved before a field existed (its config.json lacks it) had that field's default.
    config = json.loads((run / "config.json").read_text())
    del config["action_dist"]
    (run / "config.json").write_text(json.dumps(config))
    assert main(["train", "--resume", str(run), "--steps", "512", "--no-progress"]) == 0


def test_a_namespaced_env_id_gives_one_run_folder_not_nested_ones(tmp_path, monkeypatch):
    """``--env trustpg/CartPoleNoVel-v1`` without --run-name: the default name keeps the env id,
    with '/' made '_', so the run is one folder of the run dir (as compare's and tune's defaults)."""
    from trustpg.app.compare_args import parse_args

    args = ["train", "--run-dir", str(tmp_path), "--env", "trustpg/CartPoleNoVel-v1", "--steps", "128"]
    assert main([*args, *FAST]) == 0
    (run,) = tmp_path.iterdir()
    assert run.name.startswith("trustpg_CartPoleNoVel-v1__trpo__s0__") and (run / "config.json").is_file()
    monkeypatch.chdir(tmp_path)
    compare, _ = parse_args(["--env", "ALE/Pong-v5"])
    assert compare.out == Path("runs") / "compare__ALE_Pong-v5"


def test_a_hyperparameter_changed_on_resume_is_printed_and_recorded(tmp_path, capsys):
    run = tmp_path / "r"
    assert _train(tmp_path, "r", "--steps", "256") == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--steps", "512", "--max-kl", "0.02", *FAST]) == 0
    out = capsys.readouterr().out
    assert "  max_kl: 0.02 (changed on resume, recorded in config.json)" in out
    assert json.loads((run / "config.json").read_text())["max_kl"] == 0.02
    _, meta = load_checkpoint(run / "checkpoints" / "last")
    assert meta["config"]["max_kl"] == 0.02  # the next --resume starts from the changed value


def test_a_resumed_runs_summary_counts_the_training_time_of_every_session(tmp_path):
    run = tmp_path / "r"
    assert _train(tmp_path, "r", "--steps", "1024") == 0  # 8 updates
    first = json.loads((run / "summary.json").read_text())
    assert main(["train", "--resume", str(run), "--steps", "1152", *FAST]) == 0  # one more update
    second = json.loads((run / "summary.json").read_text())
    rows = read_metrics(run / "metrics.csv")
    assert len(rows) == 9
    assert second["train_seconds"] == pytest.approx(float(rows[-1]["wall_time"]))
    assert second["train_seconds"] > first["train_seconds"]  # the first session's 8 updates counted
    assert first["train_seconds"] == pytest.approx(float(rows[7]["wall_time"]))
    assert second["session_seconds"] > 0  # the resumed process's own time, reported beside
