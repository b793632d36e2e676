"""Usability end to end on tiny budgets in temporary directories: config files and their
precedence, exact reruns from config.json, eval (best checkpoint, video), plot, compare, env
objects and factories, MultiDiscrete actions and Dict observations, custom policies, callbacks."""

from __future__ import annotations

import dataclasses
import json

import _toy_envs
import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from trustpg import NPG, TRPO, VPG, Agent, TrainConfig
from trustpg.app.cli import main
from trustpg.app.train_args import parse_train_args
from trustpg.core.distributions import Categorical
from trustpg.errors import CheckpointError
from trustpg.io.logger import read_metrics
from trustpg.io.plotting import aggregate
from trustpg.io.record import TIMING_COLUMNS
from trustpg.train.callbacks import History, StopOnReturn

TINY = ["--num-envs", "2", "--steps-per-env", "64", "--steps", "256", "--no-progress",
        "--no-tensorboard", "--eval-episodes", "1"]  # fmt: skip
TINY_KW = dict(num_envs=2, steps_per_env=64, progress=False, tensorboard=False)
#: Columns that measure time, not the computation.
TIMING = set(TIMING_COLUMNS)


def _train(tmp_path, name, *extra):
    assert main(["train", *TINY, "--run-dir", str(tmp_path), "--run-name", name, *extra]) == 0
    return tmp_path / name


def _numbers(run):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in read_metrics(run / "metrics.csv")]


# -- config --------------------------------------------------------------------------------------


def test_train_help_documents_every_field(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--help"])
    assert e.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # undo line wrapping
    for f in dataclasses.fields(TrainConfig):
        assert f"--{f.name.replace('_', '-')}" in text, f.name
    for phrase in ("KL budget δ", "Damping λ added to the Fisher matrix", "--preset", "--config"):
        assert phrase in text


def test_config_json_reproduces_a_run_exactly(tmp_path):
    first = _train(tmp_path, "a", "--algo", "npg", "--seed", "3", "--gamma", "0.95")
    second = _train(tmp_path, "b", "--config", str(first / "config.json"))
    a, b = json.loads((first / "config.json").read_text()), json.loads((second / "config.json").read_text())
    assert a.pop("run_name") == "a" and b.pop("run_name") == "b"
    assert a == b and a["algo"] == "npg" and a["gamma"] == 0.95
    rows = _numbers(first)
    assert len(rows) == 2 and rows == _numbers(second)
    # ...and a different seed really gives different numbers (the comparison can fail).
    third = _train(tmp_path, "c", "--config", str(first / "config.json"), "--seed", "4")
    assert _numbers(third) != rows


def test_preset_then_config_file_then_flags(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text('env = "Pendulum-v1"\ncg_iters = 15\nvf_epochs = 3\nhidden_sizes = [32, 32]\n')
    config, resume = parse_train_args(["--preset", "mujoco", "--config", str(toml), "--vf-epochs", "7"])
    assert resume is None
    assert config.env == "Pendulum-v1"
    assert config.steps == 1_000_000  # preset only
    assert config.cg_iters == 15  # file beats preset (25)
    assert config.vf_epochs == 7  # flag beats file (3) and preset (20)
    assert config.hidden_sizes == (32, 32)
    # The classic preset refines per env, and takes the env from the config file.
    config, _ = parse_train_args(["--preset", "classic", "--config", str(toml)])
    assert config.gamma == 0.9 and config.normalize_reward
    config, _ = parse_train_args(["--preset", "classic", "--config", str(toml), "--env", "CartPole-v1"])
    assert config.gamma == 0.99


@pytest.mark.parametrize(
    "text, message",
    [("cg_itters = 3\n", "unknown config field(s) ['cg_itters']"), ("cg_iters = \n", "invalid TOML"),
     ("max_kl = -1.0\n", "max_kl=-1.0")],
)  # fmt: skip
def test_bad_config_file_is_one_line_exit_2(tmp_path, capsys, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    assert main(["train", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


# -- eval ----------------------------------------------------------------------------------------


def test_periodic_eval_keeps_best_checkpoint_and_eval_reads_it(tmp_path, capsys):
    run = _train(tmp_path, "r", "--eval-every", "1")
    rows = read_metrics(run / "metrics.csv")
    assert all(np.isfinite(r["eval_return"]) for r in rows)
    best = Agent.load(run / "checkpoints" / "best")
    assert best.trainer.best_eval == max(r["eval_return"] for r in rows)
    capsys.readouterr()
    assert main(["eval", str(run), "--checkpoint", "best", "--episodes", "2", "--stochastic"]) == 0
    assert "stochastic, 2 episodes" in capsys.readouterr().out


def test_eval_of_a_run_whose_training_batch_does_not_fit_here(tmp_path, capsys, monkeypatch):
    """A run trained on a bigger machine: its batches would not fit in this one's memory, but
    evaluating it needs no batch, so eval loads it without one (and without its workers)."""
    import trustpg.io.memory as memory

    run = _train(tmp_path, "big")
    config = TrainConfig.from_dict(json.loads((run / "config.json").read_text()))
    obs_dim, act_dim = 4, 2  # CartPole: 4 observations, 2 logits
    model = memory.estimate_model_bytes(obs_dim, act_dim, config.hidden_sizes, config.critic_hidden_sizes)
    one = memory.estimate_batch_bytes(1, 1, obs_dim, act_dim, config.hidden_sizes)
    assert config.num_envs * config.steps_per_env >= 16  # the training batch needs far more
    monkeypatch.setattr(memory, "available_memory", lambda: model + 4 * one)
    with pytest.raises(ValueError, match="of memory is available"):  # training sizes do not fit...
        Agent.load(run / "checkpoints" / "last")
    capsys.readouterr()
    assert main(["eval", str(run), "--episodes", "2"]) == 0  # ...evaluation does
    assert "deterministic, 2 episodes" in capsys.readouterr().out


def test_eval_video_writes_an_mp4(tmp_path, capsys):
    pytest.importorskip("moviepy")
    pytest.importorskip("pygame")  # CartPole renders with pygame
    run = _train(tmp_path, "r")
    out = tmp_path / "videos" / "cartpole.mp4"
    assert main(["eval", str(run), "--episodes", "2", "--video", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    data = out.read_bytes()
    assert data[4:8] == b"ftyp" and len(data) > 1000  # an MP4 container with frames
    assert [p.name for p in out.parent.iterdir()] == ["cartpole.mp4"]  # no temp folders left


# -- plot and compare ----------------------------------------------------------------------------


def _fake_run(root, env, algo, seed, returns, seconds=1.0):
    run = root / f"{env}__{algo}__s{seed}"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"env": env, "algo": algo, "seed": seed}))
    lines = ["update,env_steps,wall_time,mean_return,value_loss"]
    for i, r in enumerate(returns):
        lines.append(f"{i + 1},{(i + 1) * 100},{(i + 1) * seconds},{r},{10 - i}")
    (run / "metrics.csv").write_text("\n".join(lines) + "\n")
    return run


def test_plot_groups_by_env_and_algo_with_mean_and_std_across_seeds(tmp_path, capsys):
    runs = [
        _fake_run(tmp_path, "A-v0", "trpo", 0, [0, 10, 20]),
        _fake_run(tmp_path, "A-v0", "trpo", 1, [2, 14, 30]),
        _fake_run(tmp_path, "A-v0", "vpg", 0, [5, 5, 5]),
        _fake_run(tmp_path, "B-v0", "trpo", 0, [1, 2, 3], seconds=2.0),
    ]
    curves = aggregate(runs, "env_steps", "mean_return")
    assert set(curves) == {("A-v0", "trpo"), ("A-v0", "vpg"), ("B-v0", "trpo")}
    grid, mean, std, n = curves[("A-v0", "trpo")]
    assert n == 2 and grid[0] == 100 and grid[-1] == 300
    np.testing.assert_allclose(mean[[0, -1]], [1.0, 25.0])
    np.testing.assert_allclose(std[[0, -1]], [1.0, 5.0])
    grid, mean, _, _ = aggregate([tmp_path], "wall_time", "value_loss")[("B-v0", "trpo")]
    assert grid[-1] == 6.0 and mean[0] == 10.0  # a parent dir stands for the runs below it
    out = tmp_path / "fig" / "curves.png"
    assert main(["plot", *map(str, runs), "--out", str(out), "--x", "wall_time", "--y", "value_loss"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["plot", str(runs[0]), "--y", "no_such_column"]) == 2
    assert "no column 'no_such_column'" in capsys.readouterr().err


def test_compare_trains_every_algo_and_seed_then_plots(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may land in the working directory
    out = tmp_path / "cmp"
    argv = ["compare", "--algos", "vpg,trpo", "--env", "CartPole-v1", "--seeds", "2", "--steps", "256",
            "--out", str(out), "--num-envs", "2", "--steps-per-env", "64", "--eval-episodes", "1",
            "--no-progress", "--no-tensorboard"]  # fmt: skip
    assert main(argv) == 0
    names = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert names == [f"CartPole-v1__{a}__s{s}" for a in ("trpo", "vpg") for s in (0, 1)]
    for name in names:
        cfg = json.loads((out / name / "config.json").read_text())
        assert cfg["num_envs"] == 2 and cfg["steps"] == 256
        assert len(read_metrics(out / name / "metrics.csv")) == 2
    assert (out / "curves.png").is_file()
    table = (out / "summary.md").read_text()
    assert "| CartPole-v1 | VPG | 2 |" in table and "| CartPole-v1 | TRPO | 2 |" in table
    capsys.readouterr()
    assert main(argv) == 0  # a rerun reuses finished runs
    assert capsys.readouterr().out.count("done, reused") == 4
    assert main(["compare", "--algos", "trpo,ppo"]) == 2
    assert main(["compare", "--seed", "1"]) == 2  # reserved, and not an abbreviation of --seeds
    assert main(["compare", "--run-name=x"]) == 2
    assert not (tmp_path / "runs").exists()


# -- Python API: envs ----------------------------------------------------------------------------


def test_env_factory_matches_env_id_exactly():
    by_id = TRPO("CartPole-v1", seed=1, **TINY_KW)
    rows_id = History()
    by_id.learn(256, callback=rows_id)

    def cartpole():
        return gym.make("CartPole-v1")

    by_factory = TRPO(cartpole, seed=1, **TINY_KW)
    rows_factory = History()
    by_factory.learn(256, callback=rows_factory)
    assert by_factory.config.env == "custom:cartpole"
    strip = [{k: v for k, v in r.items() if k not in TIMING} for r in rows_id.rows]
    assert strip == [{k: v for k, v in r.items() if k not in TIMING} for r in rows_factory.rows]


def test_env_instance_and_vector_env(tmp_path):
    agent = VPG(gym.make("CartPole-v1"), **TINY_KW).learn(256)
    assert agent.config.env == "custom:CartPole-v1" and agent.num_timesteps == 256
    assert len(agent.evaluate(2)[2]) == 2
    vec = gym.make_vec("CartPole-v1", 3, vectorization_mode="sync",
                       vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP})  # fmt: skip
    agent = NPG(vec, steps_per_env=32, progress=False, tensorboard=False).learn(96)
    assert agent.config.num_envs == 3 and agent.num_timesteps == 96
    path = agent.save(tmp_path / "vec")
    with pytest.raises(ValueError, match="pass env="):
        Agent.load(path)
    again = Agent.load(path, env=lambda: gym.make("CartPole-v1"))
    obs = np.random.default_rng(0).normal(size=(6, 4))
    assert np.array_equal(again.predict(obs), agent.predict(obs))
    assert again.evaluate(1)[0] > 0
    next_step = gym.make_vec("CartPole-v1", 2, vectorization_mode="sync")
    with pytest.raises(ValueError, match="SAME_STEP"):
        TRPO(next_step)
    with pytest.raises(TypeError, match="env must be"):
        TRPO(42)
    with pytest.raises(ValueError, match="registered env id"):
        TRPO(lambda: gym.make("CartPole-v1"), workers=2, num_envs=2)


def test_multidiscrete_actions_and_dict_observations_learn():
    agent = TRPO(lambda: _toy_envs.ToyDictEnv(), seed=0, num_envs=4, steps_per_env=64, progress=False,
                 tensorboard=False, max_kl=0.05)  # fmt: skip
    before, _, _ = agent.evaluate(5)
    agent.learn(8192)
    after, _, _ = agent.evaluate(5)
    assert after > 16 > before  # optimum 20 per 10-step episode, uniform ≈ 8.3
    obs = {"pos": np.array([0.5, -0.2], np.float32), "flag": 2}
    action = agent.predict(obs)
    assert action.shape == (2,) and action.tolist() == [2, 1]
    assert agent.predict([obs, {"pos": np.array([-0.5, 0.0], np.float32), "flag": 0}]).tolist() == [
        [2, 1],
        [0, 0],
    ]


def test_cli_env_module_env_kwargs_and_dict_env(tmp_path, capsys):
    run = _train(tmp_path, "toy", "--env-module", "_toy_envs", "--env", _toy_envs.ENV_ID,
                 "--env-kwargs", '{"horizon": 5}')  # fmt: skip
    rows = read_metrics(run / "metrics.csv")
    assert all(r["mean_length"] == 5 for r in rows)
    capsys.readouterr()
    assert main(["eval", str(run), "--episodes", "2", "--env-module", "_toy_envs"]) == 0
    assert "2 episodes" in capsys.readouterr().out
    assert main(["eval", str(run), "--env-module", "no_such_pkg_xyz"]) == 2


# -- Python API: policies and callbacks ----------------------------------------------------------


class TinyPolicy(nn.Module):
    """A custom actor: any module whose forward(obs) returns a trustpg distribution."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 2)

    def forward(self, obs: torch.Tensor) -> Categorical:
        return Categorical(logits=self.linear(obs))


def test_custom_policy_trains_saves_and_loads(tmp_path):
    policy = TinyPolicy()
    agent = TRPO("CartPole-v1", policy=policy, **TINY_KW)
    assert agent.policy is policy
    w0 = policy.linear.weight.detach().clone()
    agent.learn(256)
    assert not torch.equal(policy.linear.weight, w0)
    path = agent.save(tmp_path / "custom")
    loaded = TRPO.load(path, policy=TinyPolicy())
    torch.testing.assert_close(loaded.policy.linear.weight, policy.linear.weight, rtol=0, atol=0)
    obs = np.random.default_rng(1).normal(size=(8, 4))
    assert np.array_equal(loaded.predict(obs), agent.predict(obs))
    with pytest.raises(CheckpointError):
        TRPO.load(path)  # the default MLP does not match the saved weights

    class NotAPolicy(nn.Module):
        def forward(self, obs):
            return obs

    with pytest.raises(TypeError, match=r"must return a trustpg\.core\.distributions"):
        TRPO("CartPole-v1", policy=NotAPolicy(), **TINY_KW)


def test_callbacks_stop_training_early():
    agent = TRPO("CartPole-v1", **TINY_KW)
    history = History()
    agent.learn(10_000, callback=[history, lambda row: row["update"] < 3])
    assert agent.num_timesteps == 3 * 128 and history.column("update") == [1, 2, 3]
    stop = StopOnReturn(-1.0)  # any finished episode reaches it
    agent.learn(10_000, callback=stop)
    assert stop.stopped_at == agent.num_timesteps == 4 * 128


def test_critic_size_is_set_apart_from_the_actor(tmp_path):
    """--vf-hidden-sizes widens the critic only; the actor keeps hidden_sizes, and a saved run
    loads back with both shapes."""
    flags = ["--env", "Pendulum-v1", "--hidden-sizes", "16", "--vf-hidden-sizes", "48", "24"]
    config, _ = parse_train_args([*flags, "--run-dir", str(tmp_path), "--run-name", "r"])
    assert config.vf_hidden_sizes == (48, 24) and config.critic_hidden_sizes == (48, 24)
    agent = Agent(config.replace(num_envs=2, steps_per_env=64, progress=False, tensorboard=False,
                                 eval_episodes=0))  # fmt: skip
    agent.learn(256)

    def linear(m: nn.Module) -> list[tuple[int, ...]]:
        return [tuple(x.weight.shape) for x in m.modules() if isinstance(x, nn.Linear)]

    assert linear(agent.trainer.critic) == [(48, 3), (24, 48), (1, 24)]
    assert linear(agent.trainer.actor)[:2] == [(16, 3), (1, 16)]
    again = Agent.load(agent.save(tmp_path / "ckpt"))
    assert linear(again.trainer.critic) == [(48, 3), (24, 48), (1, 24)]
    # Unset: the critic follows hidden_sizes.
    assert TrainConfig(env="Pendulum-v1", hidden_sizes=(8,)).critic_hidden_sizes == (8,)
