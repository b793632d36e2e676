"""``trustpg tune``'s search spaces: a default per algorithm, overridable from a TOML or JSON file.

A space maps TrainConfig fields to distributions. In a file, each field is a table::

    [max_kl]
    type = "float"          # float | int | categorical | fixed
    low = 0.002
    high = 0.05
    log = true              # sample log-uniformly (float and int)

    [num_envs]
    type = "categorical"
    choices = [8, 16]       # a choice may be a list, e.g. hidden_sizes = [[64, 64], [128, 128]]

    [vf_epochs]
    type = "fixed"          # not searched: every trial uses this value
    value = 10

Fields in the file replace the default space's entries of the same name and add new ones; with
``replace = true`` at the top the file is the whole space. Every bound and choice is checked
against TrainConfig's own validation before a trial runs (one line, exit 2).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trustpg.config.train_config import TrainConfig
from trustpg.errors import UserError

KINDS = ("float", "int", "categorical", "fixed")


@dataclass(frozen=True)
class Param:
    """One searched (or fixed) field: ``kind`` with its bounds, choices or value."""

    kind: str
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    choices: tuple[Any, ...] = ()
    value: Any = None

    def describe(self) -> str:
        if self.kind == "categorical":
            return "{" + ", ".join(map(str, self.choices)) + "}"
        if self.kind == "fixed":
            return f"= {self.value}"
        return f"[{self.low}, {self.high}]" + (" log" if self.log else "")


def _f(low: float, high: float, log: bool = False) -> Param:
    return Param("float", low, high, log)


def _c(*choices: Any) -> Param:
    return Param("categorical", choices=choices)


_SHARED = {
    "gamma": _c(0.9, 0.95, 0.98, 0.99, 0.995, 0.999),
    "gae_lambda": _c(0.8, 0.9, 0.95, 0.97, 0.99, 1.0),
    "num_envs": _c(4, 8, 16),
    "steps_per_env": _c(64, 128, 256, 512),
    "vf_lr": _f(1e-4, 1e-2, log=True),
    "vf_epochs": _c(3, 5, 10, 20),
    "vf_minibatch_size": _c(64, 128, 256),
    "log_std_init": _f(-1.5, 0.5),
}
#: Up to RL Zoo's tuned sb3-contrib settings in trustpg's units (0.01·A and 0.1·A for A action
#: dimensions: 0.17 and 1.7 on Humanoid; docs/theory.md §5), which a narrower space would exclude.
_NATURAL = {"max_kl": _f(1e-3, 0.2, log=True), "damping": _f(1e-3, 2.0, log=True)}
DEFAULT_SPACES: dict[str, dict[str, Param]] = {
    "trpo": {**_NATURAL, **_SHARED},
    "npg": {**_NATURAL, **_SHARED},
    "vpg": {"vpg_lr": _f(1e-4, 0.1, log=True), "vpg_optimizer": _c("sgd", "adam"), **_SHARED},
}
#: Set by tune itself for every trial; a space may not search them.
NOT_SEARCHABLE = frozenset({"algo", "env", "seed", "steps", "run_dir", "run_name", "eval_every", "progress"})


def _number(path: Path, name: str, key: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise UserError(f"--space {path}: {name}.{key} must be a number, got {v!r}")
    return float(v)


def _param(path: Path, name: str, spec: Any) -> Param:
    if not isinstance(spec, dict):
        raise UserError(f"--space {path}: {name} must be a table such as "
                        f'{{type = "float", low = 0.001, high = 0.1}}, got {spec!r}')  # fmt: skip
    kind = str(spec.get("type"))
    allowed: set[str] | None = {"float": {"low", "high", "log"}, "int": {"low", "high", "log"},
               "categorical": {"choices"}, "fixed": {"value"}}.get(kind)  # fmt: skip
    if allowed is None:
        got = spec.get("type")
        raise UserError(f"--space {path}: {name}.type must be one of {', '.join(KINDS)}, got {got!r}")
    extra = sorted(set(spec) - allowed - {"type"})
    if extra:
        raise UserError(f"--space {path}: {name} ({kind}) has unknown key(s) {extra}; "
                        f"allowed: {sorted(allowed)}")  # fmt: skip
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise UserError(f"--space {path}: {name}.choices must be a non-empty list")
        return Param(kind, choices=tuple(choices))
    if kind == "fixed":
        if "value" not in spec:
            raise UserError(f"--space {path}: {name} (fixed) needs a value")
        return Param(kind, value=spec["value"])
    if "low" not in spec or "high" not in spec:
        raise UserError(f"--space {path}: {name} ({kind}) needs low and high")
    low, high = (_number(path, name, k, spec[k]) for k in ("low", "high"))
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise UserError(f"--space {path}: {name}.log must be true or false")
    if not low < high:
        raise UserError(f"--space {path}: {name} needs low < high, got low={low:g}, high={high:g}")
    if log and low <= 0:
        raise UserError(f"--space {path}: {name} is log-scaled, so low must be > 0, got {low:g}")
    if kind == "int" and not (low.is_integer() and high.is_integer()):
        raise UserError(f"--space {path}: {name} (int) needs integer bounds")
    return Param(kind, low, high, log)


def load_space(path: Path | None, algo: str, base: TrainConfig, continuous: bool) -> dict[str, Param]:
    """The algorithm's default space updated from ``path``, each value checked on ``base``. The
    default space searches log σ₀ only for ``continuous`` (Box) action spaces."""
    space = dict(DEFAULT_SPACES[algo])
    if not continuous:
        del space["log_std_init"]
    if path is not None:
        from trustpg.app.train_args import load_config_file

        try:
            data = load_config_file(path)
        except UserError as e:
            raise UserError(str(e).replace("--config", "--space", 1)) from None
        replace = data.pop("replace", False)
        if not isinstance(replace, bool):
            raise UserError(f"--space {path}: replace must be true or false")
        if replace:
            space = {}
        fields = set(TrainConfig().to_dict())
        for name, spec in data.items():
            if name not in fields:
                raise UserError(f"--space {path}: {name} is not a TrainConfig field "
                                "(see trustpg train --help)")  # fmt: skip
            if name in NOT_SEARCHABLE:
                raise UserError(f"--space {path}: {name} is set by trustpg tune itself, not searched")
            space[name] = _param(path, name, spec)
    for name, p in space.items():
        ends: dict[str, list[Any]] = {"float": [p.low, p.high], "int": [int(p.low), int(p.high)],
                                      "categorical": list(p.choices), "fixed": [p.value]}  # fmt: skip
        values = ends[p.kind]
        for v in values:
            try:
                TrainConfig.from_dict({**base.to_dict(), name: v})
            except (TypeError, ValueError) as e:
                where = f"--space {path}" if path is not None else f"the default {algo} space"
                raise UserError(f"{where}: {name}={v!r} is not a valid value: {e}") from None
    return space


def _encode(choice: Any) -> Any:
    """Optuna stores str/int/float/bool/None choices; a list (hidden_sizes) goes as JSON text."""
    return json.dumps(choice) if isinstance(choice, list) else choice


def suggest(trial: Any, space: dict[str, Param]) -> dict[str, Any]:
    """The config overrides ``trial`` (an optuna.Trial) samples from ``space``."""
    out: dict[str, Any] = {}
    for name, p in space.items():
        if p.kind == "float":
            out[name] = trial.suggest_float(name, p.low, p.high, log=p.log)
        elif p.kind == "int":
            out[name] = trial.suggest_int(name, int(p.low), int(p.high), log=p.log)
        elif p.kind == "categorical":
            picked = trial.suggest_categorical(name, [_encode(c) for c in p.choices])
            out[name] = next(c for c in p.choices if _encode(c) == picked)
        else:
            out[name] = p.value
    return out
