"""``trustpg train``'s arguments: preset → config file → flags resolved into a TrainConfig
(:func:`parse_train_args`), and the command itself (:func:`cmd_train`). ``trustpg compare``
resolves each of its runs' configs the same way; it and :mod:`trustpg.app.cli` both import this
module, so neither imports the other."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import tyro

from trustpg.config.presets import preset_overrides
from trustpg.config.train_config import TrainConfig, deferred_validation, validate
from trustpg.errors import UserError

#: A config file holds a few dozen fields; anything far larger is a wrong path, not a config.
MAX_CONFIG_BYTES = 1 << 20


def load_config_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UserError(f"--config {path}: no such file")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise UserError(f"--config {path}: {path.stat().st_size} bytes; a config file is at most "
                        f"{MAX_CONFIG_BYTES} (is this the right file?)")  # fmt: skip
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"--config {path}: cannot read it as text: {e}") from None
    import tomllib

    kind, parse, invalid = (
        ("TOML", tomllib.loads, tomllib.TOMLDecodeError) if path.suffix == ".toml"
        else ("JSON", json.loads, json.JSONDecodeError)
    )  # fmt: skip
    try:
        data = parse(text)
    except invalid as e:
        raise UserError(f"--config {path}: invalid {kind}: {e}") from None
    except RecursionError:
        raise UserError(f"--config {path}: nested too deeply to be a config") from None
    if not isinstance(data, dict):
        raise UserError(f"--config {path}: expected a table/object of config fields")
    return data


def parse_train_args(argv: list[str]) -> tuple[TrainConfig, Path | None]:
    """Resolve preset → config file → flags into a TrainConfig; also returns --resume."""
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--preset")
    pre.add_argument("--config", type=Path)
    pre.add_argument("--resume", type=Path)
    pre.add_argument("--env-module", action="append", default=[])
    known, rest = pre.parse_known_args(argv)
    import_env_modules(known.env_module)
    base: dict[str, Any] = {}
    if known.resume is not None:
        from trustpg.app.run import saved_config

        base = dict(saved_config(known.resume))
    if known.config is not None:
        base.update(load_config_file(known.config))
    if known.preset is not None:
        env = _peek_env(rest) or base.get("env", TrainConfig.env)
        base = {**preset_overrides(known.preset, env), **base}
    try:
        default = TrainConfig.from_dict(base)
    except (TypeError, ValueError) as e:
        raise UserError(f"config: {e}") from None
    description = (
        "Train VPG, NPG or TRPO. Extra options: --preset NAME (classic, mujoco), "
        "--config FILE (.toml or .json; a run's config.json reproduces it), --resume RUN_DIR, "
        "--env-module PKG (import a package that registers envs), --seeds S [S ...] (one run per "
        "seed, in parallel worker processes, then a mean ± std table; --jobs N runs at a time, "
        "default: the usable cores). Flags override all of these."
    )
    with deferred_validation(), _one_line_parse_errors():
        config = tyro.cli(TrainConfig, args=rest, default=default, prog="trustpg train",
                          description=description)  # fmt: skip
    validate(config)
    return config, known.resume


def import_env_modules(modules: list[str]) -> None:
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise UserError(f"--env-module {module}: cannot import: {e}") from None


@contextlib.contextmanager
def _one_line_parse_errors() -> Iterator[None]:
    """tyro reports a bad flag in a multi-line box; turn it into a UserError (one line, exit 2).
    ``--help`` (exit 0) passes through untouched."""
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            yield
    except SystemExit as e:
        if e.code in (0, None):
            sys.stderr.write(captured.getvalue())
            raise
        raise UserError(_box_text(captured.getvalue()) + " (see trustpg train --help)") from None
    sys.stderr.write(captured.getvalue())


def _box_text(box: str) -> str:
    """The message inside tyro's error box: its lines up to the first rule, joined. The box is
    drawn in Unicode on a terminal and in ASCII (rules of '-', no sides) when the console is not
    one (stdout redirected into a file or a buffer)."""
    lines: list[str] = []
    for raw in box.splitlines()[1:]:  # the first line is the box's title
        text = raw.strip().strip("│╭╮╰╯").strip()
        if set(text) <= set("─- "):
            if lines:
                break
            continue
        lines.append(text)
    return " ".join(" ".join(lines).split()) or "invalid arguments"


def _peek_env(args: list[str]) -> str | None:
    for i, a in enumerate(args):
        if a == "--env" and i + 1 < len(args):
            return args[i + 1]
        if a.startswith("--env="):
            return a.split("=", 1)[1]
    return None


def cmd_train(argv: list[str]) -> int:
    from trustpg.app.seeds import train_seeds, wants_seeds

    if wants_seeds(argv):
        return train_seeds(argv)
    config, resume = parse_train_args(argv)  # before torch is imported: --help stays quick
    from trustpg.app.run import train_in_dir

    return train_in_dir(config, resume)
