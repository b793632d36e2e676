"""benchmarks/reward_terms.py: a trained policy's evaluation split into the env's reward terms,
on the run's own env (its evaluation, reproduced) and on a changed one."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from trustpg.app.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import reward_terms


class _Constant:
    def __init__(self, action: np.ndarray) -> None:
        self.action = action

    def predict(self, obs: np.ndarray) -> np.ndarray:
        return self.action


def test_the_terms_of_an_episode_sum_to_its_return_and_the_ctrl_term_is_the_torques_cost():
    env = gym.make("Hopper-v5")
    still = reward_terms.episode_terms(_Constant(np.zeros(3)), env, seed=0)
    assert still["ctrl"] == 0.0 and still["length"] > 0
    push = reward_terms.episode_terms(_Constant(np.full(3, 0.5)), env, seed=0)
    assert push["ctrl"] == pytest.approx(-1e-3 * 0.75 * push["length"])  # Hopper's weight 1e-3
    for terms in (still, push):
        parts = terms["forward"] + terms["ctrl"] + terms["survive"]
        assert parts == pytest.approx(terms["return"], abs=1e-9)
    env.close()
    assert reward_terms.mean_terms([{"a": 1.0, "b": 4.0}, {"a": 3.0}]) == {"a": 2.0, "b": 2.0}


def test_an_override_changes_the_runs_env_walker2d_v4s_model_has_a_slippery_right_foot(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"env": "Walker2d-v5", "env_kwargs": "{}"}))
    for overrides, right in (({}, 1.9), ({"xml_file": "walker2d.xml"}, 0.9)):
        env = reward_terms.env_for(tmp_path, overrides=overrides)
        model = env.unwrapped.model  # type: ignore[attr-defined]
        assert model.geom_friction[model.geom("foot_geom").id][0] == pytest.approx(right)
        assert model.geom_friction[model.geom("foot_left_geom").id][0] == pytest.approx(1.9)
        env.close()


def test_a_runs_evaluation_is_reproduced_and_an_override_is_applied(tmp_path, monkeypatch, capsys):
    rc = main(["train", "--env", "Hopper-v5", "--steps", "1024", "--num-envs", "2",
               "--steps-per-env", "256", "--run-dir", str(tmp_path), "--run-name", "h",
               "--eval-episodes", "3", "--no-progress"])  # fmt: skip
    assert rc == 0
    run = tmp_path / "h"
    recorded = json.loads((run / "summary.json").read_text())["eval_returns"]
    out = tmp_path / "terms.json"
    monkeypatch.setattr(sys, "argv", ["reward_terms.py", str(run), "--episodes", "3", "--out", str(out)])
    reward_terms.main()
    row = json.loads(out.read_text())["runs"][0]
    assert row["matches_run_eval"] == "yes" and row["return"] == pytest.approx(np.mean(recorded))
    free = tmp_path / "free.json"
    monkeypatch.setattr(sys, "argv", ["reward_terms.py", str(run), "--episodes", "3", "--out", str(free),
                                      "--env-kwargs", '{"ctrl_cost_weight": 0}'])  # fmt: skip
    reward_terms.main()
    row0 = json.loads(free.read_text())["runs"][0]
    assert row0["ctrl"] == 0.0 and row0["matches_run_eval"] == "–"
    assert row0["return"] == pytest.approx(row0["forward"] + row0["survive"])
    monkeypatch.setattr(sys, "argv", ["reward_terms.py", str(tmp_path)])
    with pytest.raises(SystemExit, match=r"no checkpoints/last\.safetensors"):
        reward_terms.main()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_walker2d_v5_with_v4s_model_steps_as_walker2d_v4_the_env_of_the_published_numbers():
    """docs/benchmarks.md trains Walker2d-v5 with xml_file="walker2d.xml" as the v3/v4 env the
    published numbers were made on: the same states, step for step (v4 also pays the alive bonus
    on the step that ends an episode, which v5 does not)."""
    ours, v4 = gym.make("Walker2d-v5", xml_file="walker2d.xml"), gym.make("Walker2d-v4")
    a, _ = ours.reset(seed=3)
    b, _ = v4.reset(seed=3)
    rng = np.random.default_rng(0)
    for _ in range(300):
        u = rng.uniform(-1, 1, 6)
        a, ra, ta, _, _ = ours.step(u)
        b, rb, tb, _, _ = v4.step(u)
        assert np.array_equal(a, b) and ta == tb and ra == pytest.approx(rb - (1.0 if tb else 0.0))
        if ta:
            break
    assert ta  # random torques topple the walker within 300 steps: the last step compared too
    ours.close()
    v4.close()
