"""Checkpoints: one safetensors file holding tensors and a JSON header; never pickle.

The JSON (config, counters, format version) is stored in the safetensors metadata under
``"trustpg"``, so a checkpoint is a single file that is written atomically: temporary file,
fsync, rename. A crash at any moment leaves either the old or the new file, never a torn one.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save_file
from torch import Tensor

FORMAT_VERSION = 1
SUFFIX = ".safetensors"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, or not a trustpg checkpoint."""


def checkpoint_path(path: str | os.PathLike) -> Path:
    p = Path(path)
    return p if p.suffix == SUFFIX else p.with_name(p.name + SUFFIX)


def save_checkpoint(path: str | os.PathLike, tensors: dict[str, Tensor], meta: dict[str, Any]) -> Path:
    """Write tensors and JSON-serialisable ``meta`` to ``path`` atomically; returns the path."""
    target = checkpoint_path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    contiguous = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    header = json.dumps({"format_version": FORMAT_VERSION, **meta, "sha256": tensor_digest(contiguous)})
    try:
        save_file(contiguous, str(tmp), metadata={"trustpg": header})
        with open(tmp, "rb") as f:
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


def load_checkpoint(path: str | os.PathLike) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read a checkpoint written by :func:`save_checkpoint`; never executes anything from the file."""
    p = Path(path)
    if not p.exists():
        p = checkpoint_path(path)
    if not p.is_file():
        raise CheckpointError(f"no checkpoint at {path} (expected a {SUFFIX} file)")
    raw = p.read_bytes()  # one read: header and tensors come from the same version of the file
    if not _is_safetensors(raw) and (raw[:1] == b"\x80" or raw[:2] == b"PK"):
        raise CheckpointError(
            f"{p} looks like a pickle/zip file (e.g. torch.save); trustpg never unpickles. "
            "Load only checkpoints written by trustpg."
        )
    metadata = _safetensors_metadata(p, raw)
    if "trustpg" not in metadata:
        raise CheckpointError(f"{p} is a safetensors file but not a trustpg checkpoint")
    try:
        meta = json.loads(metadata["trustpg"])
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{p} has a corrupt header: {e}") from None
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        version = meta.get("format_version") if isinstance(meta, dict) else None
        raise CheckpointError(f"{p} has checkpoint format {version}, this trustpg reads {FORMAT_VERSION}")
    try:
        tensors = load(raw)
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{p} is not a readable checkpoint (truncated or corrupt?): {e}") from None
    if "sha256" in meta and meta.pop("sha256") != tensor_digest(tensors):
        raise CheckpointError(f"{p} is corrupt: its tensors do not match the checksum in its header")
    return tensors, meta


def _is_safetensors(raw: bytes) -> bool:
    """An 8-byte header length that fits the file, then a JSON object. (Checked before the pickle
    magic bytes, which a legitimate header length can start with, e.g. 0x80 = 128.)"""
    if len(raw) < 9:
        return False
    (n,) = struct.unpack("<Q", raw[:8])
    return n <= len(raw) - 8 and raw[8:9] == b"{"


def _safetensors_metadata(p: Path, raw: bytes) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file: an 8-byte little-endian length, then JSON."""
    if len(raw) < 8:
        raise CheckpointError(f"{p} is not a readable checkpoint: {len(raw)} bytes (truncated?)")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > len(raw) - 8:
        raise CheckpointError(
            f"{p} is not a readable checkpoint: header of {n} bytes but the file has {len(raw)} (truncated?)"
        )
    try:
        header = json.loads(raw[8 : 8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{p} is not a readable checkpoint (corrupt header: {e})") from None
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    return metadata if isinstance(metadata, dict) else {}


def tensor_digest(tensors: dict[str, Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of ``tensors``: detects bit rot in the data,
    which safetensors itself does not check."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():  # an empty tensor has no bytes (and cannot be viewed as bytes)
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


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
