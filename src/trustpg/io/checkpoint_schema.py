"""The fields of a trustpg checkpoint's JSON, checked at load (issue 18).

A checkpoint that passes its checksum was still written by someone: these checks make a crafted
or hand-edited one fail in one line naming the field (``updates='abc'``, ``config=[]``,
``vf_opt=5``, a collector state of the wrong shape, hidden sizes that would need more memory than
there is) rather than with a traceback deep inside training, or by allocating gigabytes.
Semantic checks of the config itself are :meth:`trustpg.config.train_config.TrainConfig.from_dict`'s.
"""

from __future__ import annotations

import math
from typing import Any

from torch import Tensor

from trustpg.envs.envstate import decode
from trustpg.io.checkpoint_format import parse_json
from trustpg.io.memory import available_memory, estimate_model_bytes, gib

#: Fields every agent checkpoint (one with a ``config``) has.
REQUIRED = ("config", "updates", "env_steps", "episodes", "wall_time", "vf_opt")
_COUNTERS = ("obs", "disc_ret", "ep_ret", "ep_len")


class FieldError(ValueError):
    """A meta field of the wrong type or shape; the message names the field."""


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _need(ok: bool, field: str, value: Any, allowed: str) -> None:
    if not ok:
        raise FieldError(f"field {field}={_show(value)} is invalid: must be {allowed}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _is_finite(v: Any) -> bool:
    """A finite number (an int of 400 digits is finite but overflows float: refused too)."""
    try:
        return _is_number(v) and math.isfinite(v)
    except OverflowError:
        return False


def _sizes(v: Any) -> bool:
    return isinstance(v, list) and len(v) >= 1 and all(_is_int(h) and h >= 1 for h in v)


def check_meta(meta: dict[str, Any], tensors: dict[str, Tensor]) -> None:
    """FieldError naming the first field of ``meta`` that a trustpg checkpoint cannot hold."""
    if "config" in meta:
        for name in REQUIRED:
            _need(name in meta, name, None, "present (every agent checkpoint has it)")
    for name in ("updates", "env_steps", "episodes", "skips_in_row"):
        if name in meta:
            v = meta[name]
            _need(_is_int(v) and 0 <= v < 2**63, name, v, "an int in [0, 2^63)")
    if "wall_time" in meta:
        v = meta["wall_time"]
        _need(_is_finite(v) and v >= 0, "wall_time", v, "a number >= 0")
    if "best_eval" in meta:
        v = meta["best_eval"]
        _need(v is None or _is_finite(v), "best_eval", v, "null or a number")
    if "value_losses_unreported" in meta:
        v = meta["value_losses_unreported"]
        ok = v is None or (isinstance(v, list) and len(v) == 2 and all(x is None or _is_finite(x) for x in v))
        _need(ok, "value_losses_unreported", v, "null or a list of two numbers/nulls")
    for name in ("policy_class",):
        if name in meta:
            _need(isinstance(meta[name], str), name, meta[name], "a string")
    for name in ("vf_opt", "pg_opt"):
        if name in meta:
            _check_optimizer(name, meta[name])
    if "config" in meta:
        _check_config(meta["config"], tensors)
    if meta.get("collector") is not None:
        check_collector(meta["collector"])


def _check_optimizer(name: str, v: Any) -> None:
    _need(isinstance(v, dict), name, v, 'an object {"param_groups": [...], "scalars": {...}}')
    groups, scalars = v.get("param_groups", []), v.get("scalars", {})
    _need(isinstance(groups, list) and all(isinstance(g, dict) for g in groups),
          f"{name}.param_groups", groups, "a list of objects")  # fmt: skip
    _need(isinstance(scalars, dict), f"{name}.scalars", scalars, "an object")
    for key in scalars:
        idx = key.split(".")
        _need(len(idx) >= 3 and idx[0] == name and idx[1].isdigit(), f"{name}.scalars", key,
              f"keyed {name}.<parameter index>.<name>")  # fmt: skip


def _check_config(config: Any, tensors: dict[str, Tensor]) -> None:
    """The config's type, and that its networks fit in memory (before any is built). The
    observation size comes from the saved normaliser; the action size is taken as 1 (a lower bound)."""
    _need(isinstance(config, dict), "config", config, "an object of TrainConfig fields")
    kwargs = config.get("env_kwargs")
    if isinstance(kwargs, str):  # JSON inside the JSON: parsed by the config with no depth limit
        try:
            parse_json(kwargs)
        except ValueError as e:
            raise FieldError(f"field config.env_kwargs is invalid: {str(e)[:80]}") from None
    hidden, vf = config.get("hidden_sizes", [64, 64]), config.get("vf_hidden_sizes")
    if not _sizes(hidden) or not (vf is None or _sizes(vf)):
        return  # wrong types: TrainConfig.from_dict names them when the agent is built
    mean = tensors.get("obs_rms.mean")
    obs_dim = max(1, mean.numel()) if mean is not None else 1
    need = estimate_model_bytes(obs_dim, 1, hidden, hidden if vf is None else vf)
    avail = available_memory()
    if avail is not None and need > avail:
        shown = f"hidden_sizes={_show(hidden)}" + ("" if vf is None else f", vf_hidden_sizes={_show(vf)}")
        raise FieldError(
            f"field config: {shown} needs networks of at least {gib(need)} but {gib(avail)} of memory "
            "is available; nothing was allocated"
        )


def _encoded_array(field: str, v: Any) -> Any:
    """An array encoded by :func:`trustpg.envs.envstate.encode`, decoded (FieldError if it is not one)."""
    _need(isinstance(v, dict) and "__ndarray__" in v, field, v, "an encoded array")
    try:
        return decode(v)
    except (KeyError, TypeError, ValueError, OverflowError) as e:  # bad dtype, base64 or shape
        raise FieldError(f"field {field} is invalid: not a decodable array ({_show(e)})") from None


def check_collector(state: Any) -> None:
    """The shape of a saved :meth:`trustpg.sampling.rollout.Collector.state_dict`: episode counters that
    decode to arrays over the same envs, and per-env state as lists of wrapper layers. (Values
    inside a layer are checked when restored: see :meth:`Collector.load_state_dict`.)"""
    _need(isinstance(state, dict), "collector", state, "null or an object")
    for key in (*_COUNTERS, "envs"):
        _need(key in state, f"collector.{key}", None, "present")
    arrays = {k: _encoded_array(f"collector.{k}", state[k]) for k in _COUNTERS}
    n = arrays["obs"].shape[0] if arrays["obs"].ndim else -1
    for k, a in arrays.items():
        _need(a.ndim >= 1 and a.shape[0] == n and (k == "obs" or a.ndim == 1), f"collector.{k}",
              f"shape {a.shape}", f"one value per env, as collector.obs ({n} envs)")  # fmt: skip
    envs = state["envs"]
    _need(isinstance(envs, dict) and ("unsupported" in envs or "envs" in envs), "collector.envs", envs,
          'an object {"envs": [...]} or {"unsupported": reason}')  # fmt: skip
    if "unsupported" in envs:
        _need(
            isinstance(envs["unsupported"], str),
            "collector.envs.unsupported",
            envs["unsupported"],
            "a string",
        )
        return
    subs = envs["envs"]
    _need(isinstance(subs, list) and len(subs) == n, "collector.envs.envs", f"{type(subs).__name__}",
          f"a list of {n} env states")  # fmt: skip
    for i, sub in enumerate(subs):
        field = f"collector.envs.envs[{i}]"
        _need(isinstance(sub, dict) and ("layers" in sub or "unsupported" in sub), field, sub,
              'an object {"layers": [...]}')  # fmt: skip
        layers = sub.get("layers", [])
        _need(isinstance(layers, list), f"{field}.layers", layers, "a list")
        for j, layer in enumerate(layers):
            ok = isinstance(layer, dict) and isinstance(layer.get("type"), str)
            _need(ok and isinstance(layer.get("state"), dict), f"{field}.layers[{j}]", layer,
                  'an object {"type": name, "state": {...}}')  # fmt: skip
