"""Checkpoints: one safetensors file holding tensors and a JSON header; never pickle.

The JSON (config, counters, format version) is stored in the safetensors metadata under
``"trustpg"``, so a checkpoint is a single file that is written atomically: temporary file,
fsync, rename. A crash at any moment leaves either the old or the new file, never a torn one.

Format 2 (issue 18): ``"trustpg.sha256"`` in the metadata covers the exact header text (every
meta field) and every tensor, so an edited ``max_kl`` or ``env_steps`` is refused like bit rot.
Meta fields that can be large (the env state, ``JSON_TENSORS``) are stored as uint8 tensors of
JSON, outside the header that safetensors caps at 100 MB; :func:`load_checkpoint` returns them in
the meta as before. Format 1 files (checksum over the tensors only) still load, with a warning.
Loading refuses non-finite float tensors and meta fields of the wrong type
(:mod:`trustpg.io.checkpoint_schema`); reading is guarded by :mod:`trustpg.io.checkpoint_format`.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save
from torch import Tensor

from trustpg.errors import CheckpointError
from trustpg.io.checkpoint_format import (
    checksum,
    first_non_finite,
    from_json_tensor,
    json_tensor,
    parse_json,
    read_checkpoint_file,
    tensor_digest,
)
from trustpg.io.checkpoint_schema import FieldError, check_meta

__all__ = ["CheckpointError", "load_checkpoint", "save_checkpoint", "tensor_digest"]

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
SUFFIX = ".safetensors"
#: Meta fields stored as a uint8 tensor of JSON (name of the tensor), not in the header.
JSON_TENSORS = {"collector": "collector.state"}
_SHA_KEY = "trustpg.sha256"
log = logging.getLogger("trustpg")


def checkpoint_path(path: str | os.PathLike) -> Path:
    p = Path(path)
    return p if p.suffix == SUFFIX else p.with_name(p.name + SUFFIX)


def save_checkpoint(path: str | os.PathLike, tensors: dict[str, Tensor], meta: dict[str, Any]) -> Path:
    """Write tensors and JSON-serialisable ``meta`` to ``path`` atomically; returns the path."""
    target = checkpoint_path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    contiguous = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    meta = dict(meta)
    for field, name in JSON_TENSORS.items():
        if meta.get(field) is not None:
            if name in contiguous:
                raise ValueError(f"tensor name {name!r} is reserved for the meta field {field!r}")
            contiguous[name] = json_tensor(meta.pop(field))
    header = json.dumps({"format_version": FORMAT_VERSION, **meta})
    metadata = {"trustpg": header, _SHA_KEY: checksum(header, contiguous)}
    try:
        # Bytes, written here: safetensors' own save_file (0.8) goes through a temporary file of
        # its own (".tmpXXXXXX"), which a crash would leave behind under a name not ours.
        data = save(contiguous, metadata=metadata)
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    finally:
        if tmp.exists():
            tmp.unlink()
    return target


def load_checkpoint(
    path: str | os.PathLike, *, allow_non_finite: bool = False
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read a checkpoint written by :func:`save_checkpoint`; never executes anything from the file.

    Any problem is one :class:`CheckpointError` naming the file. ``allow_non_finite`` accepts
    float tensors holding NaN/inf (refused by default: no trained agent holds them).
    """
    p = Path(path)
    if not p.exists():
        p = checkpoint_path(path)
    if not p.is_file():
        raise CheckpointError(f"no checkpoint at {path} (expected a {SUFFIX} file)")
    raw, header = read_checkpoint_file(p)
    metadata = header.get("__metadata__")
    if not isinstance(metadata, dict) or not isinstance(metadata.get("trustpg"), str):
        raise CheckpointError(f"{p} is a safetensors file but not a trustpg checkpoint")
    text = metadata["trustpg"]
    try:
        meta = parse_json(text)
    except ValueError as e:
        raise CheckpointError(f"{p} has a corrupt header: {e}") from None
    version = meta.get("format_version") if isinstance(meta, dict) else None
    if type(version) is not int or version not in READABLE_VERSIONS or not isinstance(meta, dict):
        raise CheckpointError(
            f"{p} has checkpoint format {version!r}; this trustpg reads formats "
            f"{', '.join(map(str, READABLE_VERSIONS))} (a newer trustpg may read it)"
        )
    try:
        tensors = load(raw)
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{p} is not a readable checkpoint (truncated or corrupt?): {e}") from None
    del raw
    _verify(p, version, metadata, text, meta, tensors)
    bad = None if allow_non_finite else first_non_finite(tensors)
    if bad is not None:
        raise CheckpointError(
            f"{p}: tensor {bad} holds NaN/inf; this checkpoint cannot be used ({_others(p)})"
        )
    for field, name in JSON_TENSORS.items():
        if name in tensors:
            try:
                meta[field] = from_json_tensor(tensors.pop(name))
            except ValueError as e:
                raise CheckpointError(f"{p}: tensor {name} is not JSON ({e})") from None
    try:
        check_meta(meta, tensors)
    except FieldError as e:
        raise CheckpointError(f"{p}: checkpoint {e}; this checkpoint cannot be used") from None
    return tensors, meta


def _verify(
    p: Path, version: int, metadata: dict, text: str, meta: dict[str, Any], tensors: dict[str, Tensor]
) -> None:
    """Format 2: the checksum over header and tensors. Format 1: over the tensors, with a warning."""
    if version == 1:
        log.warning(
            "%s is a format-1 checkpoint: its checksum covers the tensors but not the header (config, "
            "counters); loaded as it is (saving it again writes format %d)", p, FORMAT_VERSION,
        )  # fmt: skip
        if "sha256" in meta and meta.pop("sha256") != tensor_digest(tensors):
            raise CheckpointError(f"{p} is corrupt: its tensors do not match the checksum in its header")
        return
    if metadata.get(_SHA_KEY) != checksum(text, tensors):
        raise CheckpointError(
            f"{p} is corrupt or was edited: its header or tensors do not match its checksum; "
            f"this checkpoint cannot be used ({_others(p)})"
        )


def _others(p: Path) -> str:
    """Where another checkpoint might be: the other checkpoints next to ``p``, if any."""
    try:
        others = sorted(q.name for q in p.parent.glob("*" + SUFFIX) if q.name != p.name)
    except OSError:
        others = []
    if others:
        return f"other checkpoints in {p.parent}: {', '.join(others[:5])}"
    return "no other checkpoint next to it; use an older copy or train again"


def prefixed(prefix: str, state: dict[str, Tensor]) -> dict[str, Tensor]:
    return {f"{prefix}.{k}": v for k, v in state.items()}


def unprefixed(prefix: str, tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    n = len(prefix) + 1
    return {k[n:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def generator_state(g: torch.Generator) -> Tensor:
    return g.get_state().clone()


def optimizer_state(prefix: str, state: dict[str, Any]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Split a ``torch.optim`` state dict into tensors and JSON (param groups, scalar entries)."""
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, Any] = {}
    for idx, entries in state.get("state", {}).items():
        for name, value in entries.items():
            key = f"{prefix}.{idx}.{name}"
            if isinstance(value, Tensor):
                tensors[key] = value
            else:
                scalars[key] = value
    return tensors, {"param_groups": state.get("param_groups", []), "scalars": scalars}


def optimizer_from(prefix: str, tensors: dict[str, Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`optimizer_state`."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in list(tensors.items()) + list(meta.get("scalars", {}).items()):
        if not key.startswith(prefix + "."):
            continue
        idx, name = key[len(prefix) + 1 :].split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    return {"state": state, "param_groups": meta.get("param_groups", [])}
