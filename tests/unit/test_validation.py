"""Bad input fails at once and clearly (issue 6): every config field is checked at construction
with a message naming the field, the value and what is allowed; the CLI reports it in one line
with exit status 2 and no traceback; unsupported spaces name the space and what is supported."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from trustpg import TRPO
from trustpg.app.cli import main
from trustpg.config.train_config import TrainConfig
from trustpg.nets.policies import action_kind, obs_dim

# (field, bad value, exception, text the message must contain besides the field and value)
BAD_API = [
    ("algo", "ppo", ValueError, "one of trpo, npg, vpg"),
    ("env", "", ValueError, "environment id"),
    ("env", 3, TypeError, "a string"),
    ("steps", 0, ValueError, ">= 1"),
    ("steps", 1.5, TypeError, "an int"),
    ("steps", True, TypeError, "an int"),
    ("seed", -1, ValueError, "in [0, 4294967295]"),
    ("seed", 2**64 + 1, ValueError, "in [0, 4294967295]"),
    ("num_envs", 0, ValueError, ">= 1"),
    ("steps_per_env", -3, ValueError, ">= 1"),
    ("vectorization", "threads", ValueError, "sync"),
    ("env_kwargs", "[1, 2]", ValueError, "JSON object"),
    ("env_kwargs", "{bad", ValueError, "JSON object"),
    ("train_time_limit", 0, ValueError, "unset (the env's own time limit) or >= 1"),
    ("train_time_limit", 200.0, TypeError, "an int"),
    ("gamma", 1.5, ValueError, "in [0, 1]"),
    ("gamma", float("nan"), ValueError, "finite"),
    ("gamma", "0.9", TypeError, "a number"),
    ("gae_lambda", -0.1, ValueError, "in [0, 1]"),
    ("normalize_advantages", 1, TypeError, "true or false"),
    ("normalize_obs", "yes", TypeError, "true or false"),
    ("obs_clip", 0.0, ValueError, "> 0"),
    ("normalize_images", "on", TypeError, "true or false"),
    ("normalize_reward", None, TypeError, "true or false"),
    ("hidden_sizes", (), ValueError, "positive layer sizes"),
    ("hidden_sizes", (64, 0), ValueError, "positive layer sizes"),
    ("hidden_sizes", (64.5,), TypeError, "tuple of ints"),
    ("vf_hidden_sizes", (), ValueError, "positive layer sizes"),
    ("vf_hidden_sizes", (0,), ValueError, "positive layer sizes"),
    ("vf_hidden_sizes", (64.5,), TypeError, "tuple of ints"),
    ("cnn_dense_sizes", (), ValueError, "positive layer sizes"),
    ("cnn_dense_sizes", (128, 0), ValueError, "positive layer sizes"),
    ("cnn_dense_sizes", (64.5,), TypeError, "tuple of ints"),
    ("activation", "sigmoid", ValueError, "one of tanh, relu, elu"),
    ("log_std_init", 100.0, ValueError, "in [-20, 5]"),
    ("action_dist", "cauchy", ValueError, "one of gaussian, beta"),
    ("policy", "transformer", ValueError, "one of auto, mlp, gru, lstm, cnn"),
    ("max_kl", 0.0, ValueError, "> 0"),
    ("max_kl", float("inf"), ValueError, "finite"),
    ("max_kl_final", 0.0, ValueError, "unset (constant δ) or > 0"),
    ("max_kl_final", "0.001", TypeError, "a number"),
    ("npg_step_size", -0.1, ValueError, "> 0"),
    ("npg_step_size", "big", TypeError, "a number"),
    ("vpg_lr", 0, ValueError, "> 0"),
    ("entropy_coef", -0.01, ValueError, ">= 0 (a bonus for entropy"),
    ("vpg_optimizer", "rmsprop", ValueError, "one of sgd, adam"),
    ("damping", -1e-3, ValueError, ">= 0"),
    ("cg_iters", 0, ValueError, ">= 1"),
    ("pcg_iters", 0, ValueError, ">= 1"),
    ("cg_tol", -1.0, ValueError, ">= 0"),
    ("fvp_method", "exact", ValueError, "one of analytic, kl_hessian"),
    ("fvp_stride", 0, ValueError, ">= 1"),
    ("fvp_stride", 10**6, ValueError, "batch size"),
    ("backtrack_ratio", 1.0, ValueError, "in (0, 1)"),
    ("backtrack_ratio", 0.0, ValueError, "in (0, 1)"),
    ("max_backtracks", -1, ValueError, ">= 0"),
    ("curvature", "lbfgs", ValueError, "one of cg, kfac, kfac-cg, diagonal, empirical"),
    ("kl", "median", ValueError, "one of mean, max, reverse"),
    ("kfac_decay", 1.0, ValueError, "in [0, 1)"),
    ("kfac_decay", -0.1, ValueError, "in [0, 1)"),
    ("ng_angle_states", -1, ValueError, ">= 0"),
    ("vf_lr", -1e-3, ValueError, "> 0"),
    ("vf_epochs", 0, ValueError, ">= 1"),
    ("vf_minibatch_size", 0, ValueError, ">= 1"),
    ("eval_episodes", -1, ValueError, ">= 0"),
    ("eval_every", -1, ValueError, ">= 0"),
    ("checkpoint_every", -5, ValueError, ">= 0"),
    ("max_consecutive_skips", 0, ValueError, ">= 1"),
    ("step_timeout", -1.0, ValueError, ">= 0 seconds"),
    ("step_timeout", "60", TypeError, "a number"),
    ("run_dir", 42, TypeError, "a path"),
    ("run_name", "a/b", ValueError, "directory name"),
    ("run_name", "..", ValueError, "directory name"),
    ("tensorboard", "no", TypeError, "true or false"),
    ("critic_overlap", 1, TypeError, "true or false"),
    ("critic_process", "no", TypeError, "true or false"),
    ("progress", 0, TypeError, "true or false"),
    ("torch_threads", 0, ValueError, ">= 1"),
    ("torch_threads", 100_000, ValueError, "the cores this process may use"),
    ("update_threads", -1, ValueError, ">= 0"),
    ("update_threads", 100_000, ValueError, "the cores this process may use"),
]


@pytest.mark.parametrize("field, value, exc, allowed", BAD_API, ids=[f"{f}={v!r}" for f, v, _, _ in BAD_API])
def test_every_bad_field_names_field_value_and_allowed_range(field, value, exc, allowed):
    with pytest.raises(exc) as err:
        TrainConfig(**{field: value})
    msg = str(err.value)
    assert f"{field}={value!r}" in msg and allowed in msg


def test_every_config_field_is_covered_by_a_bad_value():
    """A new field must get its checks (and a row above); Ray fields are tested with the Ray code."""
    covered = {f for f, *_ in BAD_API} | {"workers", "ray_address"}
    assert {f.name for f in dataclasses.fields(TrainConfig)} <= covered


def test_normalize_images_needs_normalize_obs():
    with pytest.raises(
        ValueError, match=r"normalize_images=True is invalid: must be false with normalize_obs=false"
    ):
        TrainConfig(normalize_images=True, normalize_obs=False)


def test_cnn_dense_sizes_is_for_the_cnn_only():
    message = (r"cnn_dense_sizes=\(128, 128\) is invalid: must be unset with policy='mlp' "
               r"\(it sizes the CNN's dense layers; set hidden_sizes\)")  # fmt: skip
    with pytest.raises(ValueError, match=message):
        TrainConfig(policy="mlp", cnn_dense_sizes=(128, 128))
    for policy in ("auto", "cnn"):
        TrainConfig(policy=policy, cnn_dense_sizes=(128, 128))


def test_agent_factory_validates_too():
    with pytest.raises(ValueError, match=r"gamma=2\.0 is invalid: must be in \[0, 1\]"):
        TRPO("CartPole-v1", gamma=2.0)


def test_api_coerces_what_json_and_users_naturally_pass():
    c = TrainConfig(run_dir="runs", hidden_sizes=[32, 32], cnn_dense_sizes=[8, 8])  # type: ignore[arg-type]
    assert c.run_dir == Path("runs") and c.hidden_sizes == (32, 32) and c.cnn_dense_sizes == (8, 8)
    assert TrainConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c


BAD_CLI = [
    (["--steps", "0"], "steps=0 is invalid: must be >= 1"),
    (["--steps", "abc"], "--steps"),
    (["--seed", "-1"], "seed=-1 is invalid: must be in [0, 4294967295]"),
    (["--seed", str(2**64 + 5)], "is invalid: must be in [0, 4294967295]"),
    (["--torch-threads", "100000"], "torch_threads=100000 is invalid: must be <= "),
    (["--steps-per-env", "1000000000"], "choose a smaller num_envs or steps_per_env"),
    (["--hidden-sizes", "100000", "100000"], "choose smaller hidden_sizes"),
    (["--run-name", "x" * 300], "shorter --run-name"),
    (["--gamma", "x"], "--gamma"),
    (["--gamma", "1.5"], "gamma=1.5 is invalid: must be in [0, 1]"),
    (["--algo", "ppo"], "'ppo'"),
    (["--activation", "sigmoid"], "'sigmoid'"),
    (["--hidden-sizes", "64", "0"], "hidden_sizes=(64, 0) is invalid"),
    (["--backtrack-ratio", "1"], "backtrack_ratio=1.0 is invalid: must be in (0, 1)"),
    (["--fvp-stride", "100000"], "fvp_stride=100000 is invalid"),
    (["--log-std-init", "50"], "log_std_init=50.0 is invalid"),
    (["--run-name", "a/b"], "run_name='a/b' is invalid"),
    (["--bogus-flag", "3"], "--bogus-flag"),
    (["--env", "CartPol-v1"], "Did you mean CartPole-v1"),
    (["--env-kwargs", "{bad"], "env_kwargs must be a JSON object"),
    (["--config", "/nonexistent.toml"], "no such file"),
    (["--resume", "/nonexistent/run"], "not a run directory"),
]


@pytest.mark.parametrize("args, message", BAD_CLI, ids=[" ".join(a) for a, _ in BAD_CLI])
def test_cli_bad_input_is_one_line_exit_2_no_traceback(args, message, capsys, tmp_path):
    assert main(["train", "--run-dir", str(tmp_path), "--no-progress", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("trustpg: error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not any(tmp_path.iterdir())  # nothing was started


def test_cli_config_file_nested_too_deeply_or_too_large_is_one_line(capsys, tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text('{"a":' * 100_000 + "1" + "}" * 100_000)
    big = tmp_path / "big.json"
    with open(big, "wb") as f:
        f.truncate(64 << 30)  # sparse: 64 GiB that cost no disk, and must never be read whole
    for path, message in ((deep, "nested too deeply"), (big, "a config file is at most")):
        assert main(["train", "--run-dir", str(tmp_path / "runs"), "--config", str(path)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err and str(path) in err
    assert not (tmp_path / "runs").exists()


def test_cli_env_that_needs_a_missing_package_names_the_extra(capsys, tmp_path):
    pytest.importorskip("gymnasium")
    try:
        import Box2D  # noqa: F401

        pytest.skip("Box2D is installed here")
    except ImportError:
        pass
    assert main(["train", "--run-dir", str(tmp_path), "--env", "LunarLander-v3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "gymnasium[box2d]" in err and "Traceback" not in err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    "args, message",
    [
        (["--seed", "-1"], "--seed -1 is invalid"),
        (["--seed", str(2**64)], "is invalid"),
        (["--video", "out.avi"], "must end in .mp4"),
        (["--max-episode-steps", "0"], "--max-episode-steps must be >= 1"),
        (["--video", "{blocker}/sub/x.mp4"], "cannot write there"),
    ],
)
def test_cli_eval_bad_input_is_one_line_before_any_work(args, message, capsys, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    args = [a.replace("{blocker}", str(blocker)) for a in args]
    train = ["train", "--run-dir", str(tmp_path), "--run-name", "r", "--steps", "128", "--num-envs", "2"]
    assert main([*train, "--steps-per-env", "64", "--eval-episodes", "0", "--no-progress"]) == 0
    capsys.readouterr()
    before = sorted(p.name for p in tmp_path.rglob("*"))
    assert main(["eval", str(tmp_path / "r"), "--episodes", "1", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_cli_help_still_works(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--help"])
    assert exit_.value.code == 0
    assert "--max-kl" in capsys.readouterr().out


@pytest.mark.parametrize(
    "space, supported",
    [
        (gym.spaces.Tuple((gym.spaces.Discrete(2), gym.spaces.Discrete(3))), "Discrete, MultiDiscrete"),
        (gym.spaces.Box(0, 1, (2, 2)), "Discrete, MultiDiscrete"),
        (gym.spaces.Box(0, 5, (3,), dtype=np.int64), "must be float"),
        (gym.spaces.Text(5), "Discrete, MultiDiscrete"),
    ],
)
def test_unsupported_action_space_names_it_and_what_is_supported(space, supported):
    with pytest.raises(ValueError) as err:
        action_kind(space)
    assert str(space) in str(err.value) or str(space.dtype) in str(err.value)
    assert supported in str(err.value)


@pytest.mark.parametrize("space", [gym.spaces.Discrete(4), gym.spaces.Text(5), gym.spaces.MultiBinary(3)])
def test_unsupported_observation_space_names_it_and_what_is_supported(space):
    with pytest.raises(ValueError) as err:
        obs_dim(space)
    assert str(space) in str(err.value) and "Box" in str(err.value)
