"""Every experiment runs end to end from the command line on a tiny budget and writes its files.

The budgets are too small for the numbers to mean anything; docs/theory.md shows full runs.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from trustpg.app.cli import main
from trustpg.experiments import EXPERIMENTS

#: The files each experiment must write (besides any others).
EXPECTED = {
    "bernoulli": ["bernoulli.png", "bernoulli.csv", "bernoulli.md"],
    "invariance": ["invariance.png", "invariance.csv", "invariance.md"],
    "stepsize-vs-constraint": ["stepsize_vs_constraint.png", "stepsize_vs_constraint.csv",
                               "stepsize_vs_constraint_runs.csv", "stepsize_vs_constraint.md"],
    "stepsize-raw": ["stepsize_raw.png", "stepsize_raw.csv", "stepsize_raw_runs.csv", "stepsize_raw.md"],
    "why-constraint": ["why_constraint.png", "why_constraint.csv", "why_constraint_curves.csv",
                       "why_constraint.md"],
    "angle": ["angle.png", "angle.csv", "angle_curves.csv", "angle.md"],
    "curvature": ["results.csv", "results.md", "curves_CartPole-v1.png"],
}  # fmt: skip


def test_every_registered_experiment_is_smoke_tested():
    assert set(EXPERIMENTS) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_experiment_smoke_run_writes_its_outputs(name, tmp_path, capsys):
    out = tmp_path / name
    argv_name = name.replace("-", "_") if name == "why-constraint" else name  # both spellings work
    assert main(["experiment", argv_name, "--out", str(out), "--smoke"]) == 0
    printed = capsys.readouterr().out
    for fname in EXPECTED[name]:
        path = out / fname
        assert path.is_file() and path.stat().st_size > 0, fname
        assert str(path) in printed
        if fname.endswith(".png"):
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        if fname.endswith(".csv"):
            with path.open() as f:
                rows = list(csv.DictReader(f))
            assert rows, f"{fname} has no rows"
        if fname.endswith(".md"):
            assert "|---|" in path.read_text()


def test_unknown_experiment_is_a_user_error(tmp_path, capsys):
    assert main(["experiment", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown experiment" in capsys.readouterr().err


def test_hopper_experiments_keep_the_settings_their_figures_were_made_with():
    """The δ sweeps compare constant KL budgets: the MuJoCo preset's δ schedule (max_kl_final) and
    its later γ 0.995 for Hopper must not leak into them."""
    from trustpg.config.presets import preset_overrides
    from trustpg.experiments import angle, stepsize_vs_constraint

    assert preset_overrides("mujoco", "Hopper-v5")["max_kl_final"] is not None  # what must not leak
    for tasks in (angle.TASKS, stepsize_vs_constraint.TASKS):
        config = tasks["Hopper-v5"][0]
        assert config["max_kl_final"] is None and config["gamma"] == 0.99
        assert config["cg_iters"] == 25 and config["normalize_reward"] is True  # the rest is the preset


def test_curvature_runs_on_hopper_keep_the_cg_iterations_they_were_made_with():
    """bench-runs/curvature/ Hopper-v5 runs were made with the preset's 10 CG iterations of the
    time; the preset takes 25 since, which a rerun (or a resumed run) must not pick up."""
    from trustpg.config.presets import preset_overrides
    from trustpg.experiments import curvature

    assert preset_overrides("mujoco", "Hopper-v5").get("cg_iters", 25) != 10
    assert curvature.run_config("Hopper-v5", "cg")["cg_iters"] == 10
    assert curvature.run_config("Hopper-v5", "kfac-cg")["pcg_iters"] == 5
    assert curvature.run_config("HalfCheetah-v5", "cg")["cg_iters"] == 25


def test_every_recorded_curvature_run_was_made_with_what_a_rerun_would_use():
    """A rerun (or a resumed run) of bench-runs/curvature/ repeats each recorded run's settings,
    whatever the presets became since. The one known rename: kfac-cg's runs made before
    pcg_iters existed set cg_iters=5 (curvature.VARIANTS), which kfac-cg then used."""
    from trustpg.experiments import curvature

    root = Path(__file__).resolve().parents[2] / "bench-runs" / "curvature"
    configs = sorted(root.glob("*/*/s*/config.json"))
    assert len(configs) >= 50  # CartPole, Hopper, HalfCheetah and Walker2d, several variants
    for file in configs:
        env, variant = file.parts[-4], file.parts[-3]
        recorded, skip = json.loads(file.read_text()), set[str]()
        if variant == "kfac-cg" and "pcg_iters" not in recorded:
            recorded["pcg_iters"], skip = recorded["cg_iters"], {"cg_iters"}
        for key, value in curvature.run_config(env, variant).items():
            if key in skip:
                continue
            value = list(value) if isinstance(value, tuple) else value
            assert recorded.get(key) == value, (
                f"{file}: {key} recorded {recorded.get(key)!r}, rerun {value!r}"
            )
