"""The ablation table of benchmarks/bench_report.py names every setting a variant changed."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

from trustpg.config.presets import preset_overrides
from trustpg.config.train_config import TrainConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import bench_report


def _run(root: Path, name: str, seed: int, ret: float, **overrides: object) -> None:
    config = asdict(TrainConfig(**{**preset_overrides("mujoco", "Walker2d-v5"), **overrides}))
    run = root / f"{name}__s{seed}"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"algo": "trpo", **config}, default=str))
    (run / "summary.json").write_text(json.dumps({"eval_mean": ret, "software": {"mujoco": "4.0.0"}}))


def test_ablation_rows_show_changed_critic_and_cg_settings_only(tmp_path):
    _run(tmp_path, "Walker2d-v5__vf20__trpo", 0, 4000.0, vf_epochs=20)
    _run(tmp_path, "Walker2d-v5__vf20__trpo", 1, 5000.0, vf_epochs=20)
    _run(tmp_path, "Walker2d-v5__cg50__trpo", 3, 1600.0, vf_epochs=20, cg_iters=50, hidden_sizes=(32, 32))
    rows = {
        line.split(" | ")[0][2:]: line for line in bench_report._ablations(tmp_path) if line.startswith("| W")
    }
    vf20, cg50 = rows["Walker2d-v5__vf20__trpo"], rows["Walker2d-v5__cg50__trpo"]
    assert "| 2 | 4500 ± 500 | s0: 4000, s1: 5000 |" in vf20
    assert "max_kl_final=0.002" in vf20  # always-shown keys
    # cg_iters=25 is the common and the Walker2d value: not shown; vf_epochs=20 is the common
    # value but not Walker2d's (5): shown
    assert "vf_epochs=20" in vf20 and "cg_iters" not in vf20 and "hidden_sizes" not in vf20
    assert "cg_iters=50" in cg50 and "hidden_sizes=[32, 32]" in cg50 and "vf_epochs=20" in cg50


def test_a_setting_that_is_common_but_not_the_envs_preset_is_shown(tmp_path):
    """Walker2d-v5's preset uses 5 critic epochs; a run with the common 20 shows vf_epochs=20."""
    common = preset_overrides("mujoco", "Hopper-v5")["vf_epochs"]  # Hopper keeps the common count
    assert preset_overrides("mujoco", "Walker2d-v5")["vf_epochs"] != common
    config = asdict(TrainConfig(**{**preset_overrides("mujoco", "Walker2d-v5"), "vf_epochs": common}))
    run = tmp_path / "Walker2d-v5__vfep20__trpo__s0"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"algo": "trpo", **config}, default=str))
    (run / "summary.json").write_text(json.dumps({"eval_mean": 4500.0, "software": {}}))
    (row,) = [line for line in bench_report._ablations(tmp_path) if line.startswith("| W")]
    assert f"vf_epochs={common}" in row


def test_a_critic_epoch_change_is_shown(tmp_path):
    _run(tmp_path, "Walker2d-v5__vfep5__trpo", 0, 5100.0)  # the Walker2d preset: 5 epochs
    (row,) = [line for line in bench_report._ablations(tmp_path) if line.startswith("| W")]
    assert "vf_epochs=5" in row


def test_seeds_are_listed_in_numeric_order(tmp_path):
    _run(tmp_path, "Swimmer-v5__x__trpo", 10, 362.0)
    _run(tmp_path, "Swimmer-v5__x__trpo", 2, 361.0)
    (row,) = [line for line in bench_report._ablations(tmp_path) if line.startswith("| S")]
    assert "| s2: 361, s10: 362 |" in row
    for seed, ret in ((10, 362.0), (2, 361.0)):
        run = tmp_path / "mujoco" / "Swimmer-v5" / "trpo" / f"s{seed}"
        run.mkdir(parents=True)
        (run / "summary.json").write_text(json.dumps({"eval_mean": ret, "train_seconds": 1.0}))
    rows = bench_report.collect(tmp_path / "mujoco")[("Swimmer-v5", "trpo")]
    assert [r["seed"] for r in rows] == [2, 10]
