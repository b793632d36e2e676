"""Checkpoints of real agents that cannot lie, cannot blow up and hold any size of env state
(issue 18): edited headers, NaN weights, crafted fields and configs are one CheckpointError;
the skip counter and VPG's Adam state survive a save/load; many envs fit. docs/reliability.md
lists which guarantee each test proves."""

from __future__ import annotations

import json
import resource
import struct
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import trustpg.core.curvature as curvature_mod
from trustpg import NPG, TRPO, VPG, Agent
from trustpg.app.cli import main
from trustpg.core.linalg import CGResult, flat_params
from trustpg.errors import CheckpointError, TrainingFault
from trustpg.io.checkpoint import load_checkpoint, save_checkpoint

SMALL = dict(num_envs=2, steps_per_env=32, progress=False, tensorboard=False, eval_episodes=0)
FACTORIES = {"trpo": TRPO, "npg": NPG, "vpg": VPG}


def _saved(tmp_path, algo: str = "trpo", **extra) -> tuple[Agent, object]:
    agent = FACTORIES[algo]("CartPole-v1", seed=0, **SMALL, **extra)
    agent.learn(2 * 64)
    return agent, agent.save(tmp_path / "checkpoints" / "last")


def _state(agent: Agent) -> tuple[dict, dict]:
    tensors, meta = agent.trainer.state()
    meta["policy_class"] = "trustpg.nets.policies.Actor"
    return tensors, meta


# -- the checksum covers the header ---------------------------------------------------------------
@pytest.mark.parametrize("edit", ["max_kl", "env_steps"])
def test_edited_header_field_is_refused_naming_the_file(tmp_path, edit):
    _, path = _saved(tmp_path)
    with safe_open(str(path), "pt") as f:
        metadata = f.metadata()
    meta = json.loads(metadata["trustpg"])
    if edit == "max_kl":
        meta["config"]["max_kl"] = 0.5
    else:
        meta["env_steps"] += 10_000
    metadata["trustpg"] = json.dumps(meta)
    save_file(load_file(str(path)), str(path), metadata=metadata)
    with pytest.raises(CheckpointError, match=r"is corrupt or was edited") as err:
        Agent.load(path)
    assert str(path) in str(err.value)


def test_format_1_agent_checkpoint_still_loads_with_a_warning(tmp_path, caplog):
    from trustpg.io.checkpoint_format import tensor_digest

    agent, _ = _saved(tmp_path)
    tensors, meta = _state(agent)
    del meta["skips_in_row"]  # format 1 had no skip counter and the env state in its header
    header = json.dumps({"format_version": 1, **meta, "sha256": tensor_digest(tensors)})
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp_path / "v1.safetensors"),
              metadata={"trustpg": header})  # fmt: skip
    loaded = Agent.load(tmp_path / "v1")
    assert "format-1 checkpoint" in caplog.text
    assert torch.equal(flat_params(loaded.policy), flat_params(agent.policy))
    loaded.learn(64)
    agent.learn(64)
    assert torch.equal(flat_params(loaded.policy), flat_params(agent.policy))  # env state restored too


# -- NaN/inf weights ------------------------------------------------------------------------------
def test_nan_weights_are_refused_at_load_api_and_command_line(tmp_path, capsys):
    agent, _ = _saved(tmp_path)
    tensors, meta = _state(agent)
    tensors["actor.net.2.weight"] = tensors["actor.net.2.weight"].clone()
    tensors["actor.net.2.weight"][0, 0] = float("nan")
    path = save_checkpoint(tmp_path / "checkpoints" / "last", tensors, meta)
    with pytest.raises(CheckpointError, match=r"tensor actor\.net\.2\.weight holds NaN/inf") as err:
        Agent.load(path)
    assert str(path) in str(err.value)
    assert main(["eval", str(path), "--episodes", "1"]) == 2
    out = capsys.readouterr().err
    assert out.count("\n") == 1 and "holds NaN/inf" in out and "Traceback" not in out


# -- crafted fields -------------------------------------------------------------------------------
CRAFTED = [
    ("updates", "abc", "updates='abc'"),
    ("env_steps", -5, "env_steps=-5"),
    ("wall_time", "soon", "wall_time='soon'"),
    ("wall_time", 10**400, "wall_time=1000"),  # finite as an int, overflows a float
    ("skips_in_row", 1.5, "skips_in_row=1.5"),
    ("config", [], "config=[]"),
    ("vf_opt", 5, "vf_opt=5"),
    ("pg_opt", {"param_groups": 3}, "pg_opt.param_groups=3"),
    ("best_eval", "high", "best_eval='high'"),
    ("collector", [1, 2], "collector=[1, 2]"),
    ("collector", {"obs": 1}, "collector.disc_ret"),
    ("collector", "obs", "collector='obs'"),
]


@pytest.mark.parametrize("field, value, named", CRAFTED, ids=[f"{f}={v!r}"[:30] for f, v, _ in CRAFTED])
def test_crafted_field_of_the_wrong_type_is_one_checkpoint_error_naming_it(tmp_path, field, value, named):
    agent, _ = _saved(tmp_path)
    tensors, meta = _state(agent)
    meta[field] = value
    path = save_checkpoint(tmp_path / "crafted", tensors, meta)  # a valid checksum: only the field is bad
    with pytest.raises(CheckpointError, match=r"checkpoint field ") as err:
        Agent.load(path)
    assert named in str(err.value) and str(path) in str(err.value)


def test_json_bomb_in_the_config_env_kwargs_is_refused_naming_it(tmp_path):
    agent, _ = _saved(tmp_path)
    tensors, meta = _state(agent)
    meta["config"]["env_kwargs"] = "[" * 5000 + "]" * 5000  # JSON in a JSON string: not seen by the scan
    with pytest.raises(CheckpointError, match=r"field config\.env_kwargs is invalid: JSON nested 5000 deep"):
        Agent.load(save_checkpoint(tmp_path / "crafted", tensors, meta))


def test_missing_counter_is_refused_naming_it(tmp_path):
    agent, _ = _saved(tmp_path)
    tensors, meta = _state(agent)
    del meta["episodes"]
    with pytest.raises(CheckpointError, match=r"field episodes=None is invalid: must be present"):
        Agent.load(save_checkpoint(tmp_path / "crafted", tensors, meta))


def test_crafted_optimizer_tensor_is_a_checkpoint_error(tmp_path):
    agent, _ = _saved(tmp_path)
    tensors, meta = _state(agent)
    tensors["vf_opt.0.exp_avg"] = torch.zeros(3)  # the wrong shape for the critic's first layer
    with pytest.raises(CheckpointError, match=r"optimiser state do not fit"):
        Agent.load(save_checkpoint(tmp_path / "crafted", tensors, meta))


def test_crafted_env_state_value_stops_the_resume_with_a_checkpoint_error(tmp_path):
    agent, _ = _saved(tmp_path)
    tensors, meta = _state(agent)
    meta["collector"]["envs"]["envs"][0]["layers"][-1]["state"] = {"attrs": "junk"}
    resumed = Agent.load(save_checkpoint(tmp_path / "crafted", tensors, meta))  # structure is valid
    with pytest.raises(CheckpointError, match=r"the env state in the checkpoint cannot be restored"):
        resumed.learn(64)


_HUGE_CHILD = textwrap.dedent("""
    import sys
    from trustpg import TRPO, Agent
    from trustpg.io.checkpoint import load_checkpoint, save_checkpoint
    from trustpg.errors import CheckpointError
    agent = TRPO("CartPole-v1", num_envs=2, steps_per_env=32, progress=False, tensorboard=False)
    tensors, meta = agent.trainer.state()
    meta["config"]["hidden_sizes"] = [1_000_000, 1_000_000]
    path = save_checkpoint(sys.argv[1], tensors, meta)
    try:
        Agent.load(path)
    except CheckpointError as e:
        print(e)
        sys.exit(0)
    sys.exit(3)
""")


def _limit_address_space() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))


def test_checkpoint_config_with_huge_networks_is_refused_before_allocating(tmp_path):
    """In a child with a 3 GiB address space: building the 10¹² parameters would fail there."""
    proc = subprocess.run(
        [sys.executable, "-c", _HUGE_CHILD, str(tmp_path / "huge")], capture_output=True, text=True,
        timeout=120, preexec_fn=_limit_address_space,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "field config: hidden_sizes=[1000000, 1000000] needs networks of at least" in proc.stdout
    assert "nothing was allocated" in proc.stdout and str(tmp_path / "huge") in proc.stdout


@pytest.mark.parametrize(
    "flags, named",
    [
        (["--hidden-sizes", "1000000", "1000000"], "hidden_sizes=(1000000, 1000000) needs networks"),
        (["--steps-per-env", "1000000000"], "num_envs=8 × steps_per_env=1000000000 needs batches"),
        # a GRU of 10⁶ units has 3·10¹² weights (counted as built, not as an MLP of that width)
        (["--policy", "gru", "--hidden-sizes", "1000000"], "hidden_sizes=(1000000,) needs networks"),
    ],
)
def test_command_line_sizes_that_cannot_fit_exit_2_before_allocating(tmp_path, flags, named):
    cmd = [sys.executable, "-m", "trustpg", "train", *flags, "--run-dir", str(tmp_path), "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, preexec_fn=_limit_address_space)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert named in proc.stderr and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


# -- counters and optimiser state survive save/load ---------------------------------------------
def test_split_run_with_consecutive_skips_stops_at_the_same_update(tmp_path, monkeypatch):
    def breakdown(Av, b, **k):
        return CGResult(torch.zeros_like(b), float("nan"), 1, "breakdown")

    monkeypatch.setattr(curvature_mod, "conjugate_gradient", breakdown)
    whole = TRPO("CartPole-v1", seed=0, max_consecutive_skips=3, **SMALL)
    with pytest.raises(TrainingFault) as err:
        whole.learn(10 * 64)
    assert err.value.row["update"] == 3

    first = TRPO("CartPole-v1", seed=0, max_consecutive_skips=3, **SMALL)
    first.learn(2 * 64)  # two skips in a row, then a checkpoint
    second = Agent.load(first.save(tmp_path / "last"))
    assert second.trainer.skips_in_row == 2
    with pytest.raises(TrainingFault) as err:
        second.learn(8 * 64)
    assert err.value.row["update"] == 3


@pytest.mark.parametrize("algo, extra", [("trpo", {}), ("npg", {}), ("vpg", {"vpg_optimizer": "adam"})])
@pytest.mark.parametrize("how", ["save", "learn_0"])
def test_load_then_save_keeps_every_tensor_and_field(tmp_path, algo, extra, how):
    _, path = _saved(tmp_path, algo, **extra)
    agent = Agent.load(path)
    if how == "save":
        again = agent.save(tmp_path / "again")
    else:  # a resume with no steps left
        agent.learn(0, run_dir=tmp_path / "resumed")
        again = tmp_path / "resumed" / "checkpoints" / "last.safetensors"
    ta, meta_a = load_checkpoint(path)
    tb, meta_b = load_checkpoint(again)
    assert ta.keys() == tb.keys()
    assert all(ta[k].dtype == tb[k].dtype and torch.equal(ta[k], tb[k]) for k in ta)
    assert meta_a == meta_b
    if algo == "vpg":
        assert any(k.startswith("pg_opt.") for k in tb)


# -- many envs ------------------------------------------------------------------------------------
def test_run_of_3000_cartpole_envs_keeps_the_header_small_and_resumes_exactly(tmp_path):
    big = dict(SMALL, num_envs=3000, steps_per_env=2)
    whole = TRPO("CartPole-v1", seed=0, **big)
    whole.learn(2 * 6000)
    first = TRPO("CartPole-v1", seed=0, **big)
    first.learn(6000)
    path = first.save(tmp_path / "last")
    first.close()
    (header_len,) = struct.unpack("<Q", path.read_bytes()[:8])
    assert header_len < 16_384  # the env state (~5 MB of JSON here) is a tensor, not in the header
    assert load_file(str(path))["collector.state"].numel() > 3000 * 1000
    second = Agent.load(path)
    second.learn(6000)
    ta, tb = second.trainer.state()[0], whole.trainer.state()[0]
    assert all(torch.equal(ta[k], tb[k]) for k in ta)
