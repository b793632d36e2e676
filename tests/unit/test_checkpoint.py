"""The checkpoint file format (issue 18): checksums cover header and tensors, NaN/inf tensors,
crafted JSON and oversized files are refused in one CheckpointError, env state of any size is
stored outside the 100 MB safetensors header, and the memory estimate refuses absurd configs.
docs/reliability.md lists which guarantee each test proves."""

from __future__ import annotations

import json
import resource
import struct
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

import trustpg.io.checkpoint_format as fmt
from trustpg.envs.envstate import encode
from trustpg.errors import CheckpointError
from trustpg.io.checkpoint import JSON_TENSORS, load_checkpoint, save_checkpoint
from trustpg.io.checkpoint_format import checksum, json_depth, parse_json, tensor_digest
from trustpg.io.memory import available_memory, check_memory, estimate_model_bytes, mlp_params
from trustpg.nets.policies import Critic, make_actor

TENSORS = {"actor.w": torch.arange(6.0).reshape(2, 3), "rng.action": torch.arange(5, dtype=torch.uint8)}


def _write_v2(path, tensors: dict, header: str) -> None:
    """A format-2 file with any header text and a valid checksum: what a crafter can write."""
    metadata = {"trustpg": header, "trustpg.sha256": checksum(header, tensors)}
    save_file(tensors, str(path), metadata=metadata)


def _collector(n_envs: int, blob: np.ndarray | None = None) -> dict:
    attrs = {"state": encode(np.zeros(4))} if blob is None else {"big": encode(blob)}
    layer = {"type": "gymnasium.envs.classic_control.cartpole.CartPoleEnv", "state": {"attrs": attrs}}
    return {
        "obs": encode(np.zeros((n_envs, 4), np.float32)), "disc_ret": encode(np.zeros(n_envs)),
        "ep_ret": encode(np.zeros(n_envs)), "ep_len": encode(np.zeros(n_envs, np.int64)),
        "envs": {"envs": [{"layers": [layer]} for _ in range(n_envs)]},
    }  # fmt: skip


# -- checksum over the header ---------------------------------------------------------------------
@pytest.mark.parametrize("field, value", [("env_steps", 10**6), ("max_kl", 0.5)])
def test_editing_any_header_field_is_refused_as_edited(tmp_path, field, value):
    path = save_checkpoint(tmp_path / "c", TENSORS, {"env_steps": 128, "max_kl": 0.01})
    data = path.read_bytes()
    edited = data.replace(b'\\"env_steps\\": 128', b'\\"env_steps\\": 999').replace(b"0.01", b"0.51")
    assert len(edited) == len(data) and edited != data  # same length: only the checksum can tell
    path.write_bytes(edited)
    with pytest.raises(CheckpointError, match=r"is corrupt or was edited") as err:
        load_checkpoint(path)
    assert str(path) in str(err.value)


def test_format_1_file_loads_with_a_one_line_warning(tmp_path, caplog):
    header = json.dumps({"format_version": 1, "env_steps": 64, "sha256": tensor_digest(TENSORS)})
    save_file(TENSORS, str(tmp_path / "v1.safetensors"), metadata={"trustpg": header})
    tensors, meta = load_checkpoint(tmp_path / "v1")
    assert torch.equal(tensors["actor.w"], TENSORS["actor.w"]) and meta["env_steps"] == 64
    assert "format-1 checkpoint" in caplog.text and caplog.text.count("\n") == 1


def test_format_1_file_with_corrupt_tensors_is_still_refused(tmp_path):
    header = json.dumps({"format_version": 1, "sha256": tensor_digest(TENSORS)})
    save_file({**TENSORS, "actor.w": TENSORS["actor.w"] + 1}, str(tmp_path / "v1.safetensors"),
              metadata={"trustpg": header})  # fmt: skip
    with pytest.raises(CheckpointError, match="do not match the checksum"):
        load_checkpoint(tmp_path / "v1")


def test_unknown_format_version_is_refused_naming_it(tmp_path):
    _write_v2(tmp_path / "c.safetensors", TENSORS, json.dumps({"format_version": 3}))
    with pytest.raises(CheckpointError, match=r"format 3; this trustpg reads formats 1, 2"):
        load_checkpoint(tmp_path / "c")


# -- non-finite tensors ---------------------------------------------------------------------------
def test_nan_or_inf_float_tensor_is_refused_naming_it(tmp_path):
    for bad in (float("nan"), float("inf")):
        w = TENSORS["actor.w"].clone()
        w[1, 2] = bad
        path = save_checkpoint(tmp_path / "checkpoints" / "last", {**TENSORS, "actor.w": w}, {})
        with pytest.raises(CheckpointError, match=r"tensor actor\.w holds NaN/inf; this checkpoint cannot"):
            load_checkpoint(path)
        assert torch.isnan(load_checkpoint(path, allow_non_finite=True)[0]["actor.w"]).any() == (bad != bad)
    save_checkpoint(tmp_path / "checkpoints" / "best", TENSORS, {})
    with pytest.raises(CheckpointError, match=r"other checkpoints in .*: best\.safetensors"):
        load_checkpoint(path)


# -- env state outside the header ---------------------------------------------------------------
def test_env_state_over_100_mb_round_trips_and_the_header_stays_small(tmp_path):
    blob = np.random.default_rng(0).integers(0, 256, 80 << 20, dtype=np.uint8)  # 107 MB as base64
    state = _collector(2, blob)
    meta = {"updates": 3, "collector": state}
    path = save_checkpoint(tmp_path / "c", TENSORS, meta)
    (header_len,) = struct.unpack("<Q", path.read_bytes()[:8])
    assert header_len < 4096 and path.stat().st_size > 100 << 20
    tensors, loaded = load_checkpoint(path)
    assert loaded["collector"] == json.loads(json.dumps(state)) and loaded["updates"] == 3
    assert set(tensors) == set(TENSORS)  # the JSON tensor is returned in the meta, not as a tensor
    assert JSON_TENSORS["collector"] not in tensors


def test_collector_of_the_wrong_shape_is_refused_naming_the_field(tmp_path):
    bad = _collector(3)
    bad["ep_ret"] = encode(np.zeros(2))  # 2 envs' counters for 3 envs
    path = save_checkpoint(tmp_path / "c", TENSORS, {"collector": bad})
    with pytest.raises(CheckpointError, match=r"collector\.ep_ret"):
        load_checkpoint(path)


# -- crafted JSON -------------------------------------------------------------------------------
def test_json_nesting_bomb_in_the_trustpg_header_is_refused(tmp_path):
    _write_v2(tmp_path / "c.safetensors", TENSORS, "[" * 100_000 + "]" * 100_000)
    with pytest.raises(CheckpointError, match=r"nested 100000 deep"):
        load_checkpoint(tmp_path / "c")


def test_json_nesting_bomb_in_the_safetensors_header_is_refused(tmp_path):
    header = b'{"__metadata__": {"trustpg": "{}"}, "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    (tmp_path / "c.safetensors").write_bytes(struct.pack("<Q", len(header)) + header)
    with pytest.raises(CheckpointError, match=r"not a readable checkpoint \(corrupt header: JSON nested"):
        load_checkpoint(tmp_path / "c")


def test_json_nesting_bomb_in_the_env_state_tensor_is_refused(tmp_path):
    bomb = b"[" * 100_000 + b"]" * 100_000
    tensors = {**TENSORS, "collector.state": torch.frombuffer(bytearray(bomb), dtype=torch.uint8)}
    _write_v2(tmp_path / "c.safetensors", tensors, json.dumps({"format_version": 2}))
    with pytest.raises(CheckpointError, match=r"tensor collector\.state is not JSON \(JSON nested"):
        load_checkpoint(tmp_path / "c")


def test_integer_of_5000_digits_in_the_header_is_refused(tmp_path):
    _write_v2(tmp_path / "c.safetensors", TENSORS, '{"format_version": 2, "updates": 1' + "0" * 5000 + "}")
    with pytest.raises(CheckpointError, match=r"corrupt header: .*4300 digits"):
        load_checkpoint(tmp_path / "c")


_json = st.recursive(
    st.none() | st.integers() | st.text('[]{}"\\ab'),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text('[]{}"\\', max_size=3), c, max_size=3),
    max_leaves=12,
)


def _depth(v) -> int:
    if isinstance(v, list):
        return 1 + max(map(_depth, v), default=0)
    if isinstance(v, dict):
        return 1 + max(map(_depth, v.values()), default=0)
    return 0


@settings(max_examples=300, deadline=None)
@given(_json)
def test_json_depth_scan_matches_the_parsed_structure(value):
    """Brackets, quotes and backslashes inside strings never fool the depth scan."""
    text = json.dumps(value)
    assert json_depth(text.encode()) == _depth(value)
    assert parse_json(text) == value


# -- oversized and inconsistent files, in a child process with little address space -------------
_CHILD = textwrap.dedent("""
    import json, struct, sys
    from pathlib import Path
    import torch
    from trustpg.io.checkpoint import load_checkpoint, save_checkpoint
    from trustpg.errors import CheckpointError
    case, path = sys.argv[1], Path(sys.argv[2])
    if case == "zeros":
        path.write_bytes(b"")
    elif case == "trailing":
        save_checkpoint(path, {"w": torch.arange(3.0)}, {})
    else:  # a header describing a 64 GiB tensor, consistent with the file's size
        header = json.dumps({"__metadata__": {"trustpg": "{}"},
                             "w": {"dtype": "U8", "shape": [64 << 30], "data_offsets": [0, 64 << 30]}})
        header += " " * (-len(header) % 8)
        path.write_bytes(struct.pack("<Q", len(header)) + header.encode())
        size = 8 + len(header) + (64 << 30)
    with open(path, "r+b") as f:
        f.truncate(size if case == "huge_tensor" else 64 << 30)  # sparse: costs no disk
    try:
        load_checkpoint(path)
    except CheckpointError as e:
        print(e)
        sys.exit(0)
    sys.exit(3)
""")


def _limit_address_space() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))


@pytest.mark.parametrize(
    "case, message",
    [
        ("zeros", "not a readable checkpoint (corrupt header"),
        ("trailing", "trailing bytes: corrupt?"),
        ("huge_tensor", "over the 16.0 GB a trustpg checkpoint may have; not read"),
    ],
)
def test_64_gib_sparse_file_is_refused_without_reading_it(tmp_path, case, message):
    """Run with a 3 GiB address-space limit and a timeout: a regression fails, not the machine."""
    path = tmp_path / "c.safetensors"
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, case, str(path)], capture_output=True, text=True, timeout=120,
        preexec_fn=_limit_address_space,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert message in proc.stdout and str(path) in proc.stdout


def test_file_larger_than_available_memory_is_refused(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "c", TENSORS, {})
    monkeypatch.setattr(fmt, "available_memory", lambda: path.stat().st_size)
    with pytest.raises(CheckpointError, match=r"loading it needs about .* of memory is available"):
        load_checkpoint(path)


# -- memory estimate ------------------------------------------------------------------------------
def test_model_estimate_counts_the_parameters_of_actor_and_critic():
    import gymnasium as gym

    obs, act = gym.spaces.Box(-1, 1, (11,)), gym.spaces.Box(-1, 1, (3,))
    actor, critic = make_actor(obs, act, (64, 32), "tanh", 0.0), Critic(11, (128,))
    n_actor = sum(p.numel() for p in actor.parameters())
    n_critic = sum(p.numel() for p in critic.parameters())
    assert mlp_params([11, 64, 32, 3]) + 3 == n_actor and mlp_params([11, 128, 1]) == n_critic
    layers = 5 * 8192  # 3 + 2 linear layers
    assert estimate_model_bytes(11, 3, (64, 32), (128,)) == 4 * (8 * n_actor + 5 * n_critic) + layers


def _config(**kw):
    c = dict(hidden_sizes=(64, 64), critic_hidden_sizes=(64, 64), num_envs=8, steps_per_env=256)
    return SimpleNamespace(**{**c, **kw})


def test_check_memory_refuses_huge_networks_and_batches_naming_the_fields():
    eight_gb = 8 << 30
    check_memory(_config(), 17, 6, available=eight_gb)  # the defaults fit easily
    with pytest.raises(ValueError, match=r"^hidden_sizes=\(100000, 100000\) needs networks of about") as err:
        huge = (100_000, 100_000)
        check_memory(_config(hidden_sizes=huge, critic_hidden_sizes=huge), 4, 2, available=eight_gb)
    assert "8.0 GB of memory is available" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ValueError, match=r"^num_envs=8 × steps_per_env=1000000000 needs batches of about"):
        check_memory(_config(steps_per_env=10**9), 4, 2, available=eight_gb)


def test_available_memory_is_known_on_linux():
    avail = available_memory()
    assert avail is None or 0 < avail < 1 << 50
    if sys.platform == "linux":
        assert avail is not None
