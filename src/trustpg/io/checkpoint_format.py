"""Reading a checkpoint file defensively (issue 18): whatever its bytes, reading it ends in the
data or in one :class:`CheckpointError` naming the file — never a traceback, a hang or an
allocation the file's size does not justify.

- The 8-byte header length and the safetensors header are read and checked first: the header
  must fit the file and be at most ``MAX_HEADER_BYTES`` (safetensors' own limit), and the tensor
  data it describes must end exactly where the file ends. Only then is the file read, once,
  from the same open file (so header and tensors come from the same version of it).
- Files larger than ``MAX_FILE_BYTES``, or than half the memory available (loading holds the
  bytes and the tensors), are refused before they are read.
- JSON is nested at most ``MAX_JSON_DEPTH`` deep (checked before parsing, so a ``[[[[...]]]]``
  bomb cannot exhaust the recursion limit); integers over 4,300 digits are refused by Python.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from trustpg.errors import CheckpointError
from trustpg.io.memory import available_memory, gib

MAX_FILE_BYTES = 16 << 30
MAX_HEADER_BYTES = 100 << 20  # safetensors refuses larger headers
MAX_JSON_DEPTH = 100
_NOT_STRUCTURE = bytes(sorted(set(range(256)) - set(b'"[]{}')))


def json_depth(text: bytes) -> int:
    """How deeply arrays and objects nest in the JSON ``text`` (brackets inside strings ignored).

    Linear and in C: escaped backslashes and quotes are removed first (left to right, as a JSON
    tokenizer pairs them), then everything but quotes and brackets; a bracket after an odd number
    of quotes was in a string."""
    structure = text.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _NOT_STRUCTURE)
    b = np.frombuffer(structure, np.uint8)
    quote = b == ord('"')
    outside = (np.cumsum(quote, dtype=np.uint8) & 1) == 0  # an even number of quotes so far
    b = b[outside & ~quote]
    if not b.size:
        return 0
    steps = np.where((b == ord("[")) | (b == ord("{")), 1, -1).astype(np.int32)
    return int(np.cumsum(steps, dtype=np.int64).max())


def parse_json(text: str | bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` that refuses nesting deeper than ``max_depth``; ValueError with the reason."""
    try:
        data, text = (text, text.decode("utf-8")) if isinstance(text, bytes) else (text.encode("utf-8"), text)
    except UnicodeError as e:
        raise ValueError(f"not UTF-8 text ({e})") from None
    depth = json_depth(data)
    if depth > max_depth:
        raise ValueError(f"JSON nested {depth} deep, more than the {max_depth} a checkpoint may use")
    try:
        return json.loads(text)
    except RecursionError:  # the scan above misjudged malformed JSON; the parser still stops
        raise ValueError(f"JSON nested more than {max_depth} deep") from None
    except ValueError as e:  # JSONDecodeError, or an integer of more than 4,300 digits
        raise ValueError(str(e)) from None


def looks_like_pickle(first: bytes, size: int) -> bool:
    """Pickle/zip magic bytes, unless the file starts like a safetensors file (a header length
    that fits, then ``{``): a legal header length can start with 0x80 or ``PK`` too."""
    if len(first) >= 9:
        (n,) = struct.unpack("<Q", first[:8])
        if n <= size - 8 and first[8:9] == b"{":
            return False
    return first[:1] == b"\x80" or first[:2] == b"PK"


def read_checkpoint_file(p: Path) -> tuple[bytes, dict[str, Any]]:
    """The whole file at ``p`` and its parsed safetensors header, each checked before reading on."""
    with open(p, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        first = f.read(9)
        if looks_like_pickle(first, size):
            raise CheckpointError(
                f"{p} looks like a pickle/zip file (e.g. torch.save); trustpg never unpickles. "
                "Load only checkpoints written by trustpg."
            )
        if size < 8:
            raise CheckpointError(f"{p} is not a readable checkpoint: {size} bytes (truncated?)")
        (n,) = struct.unpack("<Q", first[:8])
        if n > size - 8:
            raise CheckpointError(
                f"{p} is not a readable checkpoint: header of {n} bytes but the file has {size} (truncated?)"
            )
        if n > MAX_HEADER_BYTES:
            raise CheckpointError(
                f"{p} is not a readable checkpoint: header of {gib(n)}, over safetensors' 100 MB"
            )
        f.seek(8)
        try:
            header = parse_json(f.read(n))
        except ValueError as e:
            raise CheckpointError(f"{p} is not a readable checkpoint (corrupt header: {e})") from None
        if not isinstance(header, dict):
            raise CheckpointError(f"{p} is not a readable checkpoint (corrupt header: not a JSON object)")
        described = 8 + n + _data_end(p, header)
        if described != size:
            why = "truncated?" if described > size else "trailing bytes: corrupt?"
            raise CheckpointError(
                f"{p} is not a readable checkpoint: its header describes {described} bytes but the file has "
                f"{size} ({why})"
            )
        _check_size(p, size)
        f.seek(0)
        raw = f.read(size)
    if len(raw) != size:
        raise CheckpointError(f"{p} is not a readable checkpoint: it shrank while being read")
    return raw, header


def _data_end(p: Path, header: dict[str, Any]) -> int:
    """Where the tensor data described by a safetensors ``header`` ends (relative to its start)."""
    end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (
            isinstance(offsets, list) and len(offsets) == 2
            and all(isinstance(x, int) and not isinstance(x, bool) for x in offsets)
            and 0 <= offsets[0] <= offsets[1]
        ):  # fmt: skip
            what = f"tensor {name[:80]!r} has no valid data_offsets"
            raise CheckpointError(f"{p} is not a readable checkpoint (corrupt header: {what})")
        end = max(end, offsets[1])
    return end


def _check_size(p: Path, size: int) -> None:
    if size > MAX_FILE_BYTES:
        raise CheckpointError(
            f"{p} is {gib(size)}, over the {gib(MAX_FILE_BYTES)} a trustpg checkpoint may have; not read"
        )
    avail = available_memory()
    if avail is not None and 2 * size > avail:
        raise CheckpointError(
            f"{p} is {gib(size)}; loading it needs about {gib(2 * size)} but {gib(avail)} of memory "
            "is available; not read (free memory or load it on a larger machine)"
        )


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


def checksum(header: str, tensors: dict[str, Tensor]) -> str:
    """Format 2's SHA-256: the exact JSON header text (every meta field) and every tensor."""
    h = hashlib.sha256(b"trustpg checkpoint format 2\n")
    h.update(header.encode("utf-8"))
    h.update(b"\n" + tensor_digest(tensors).encode("ascii"))
    return h.hexdigest()


def json_tensor(value: Any) -> Tensor:
    """``value`` as compact JSON in a uint8 tensor (for fields too large for a header)."""
    data = json.dumps(value, separators=(",", ":")).encode("utf-8")
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def from_json_tensor(t: Tensor) -> Any:
    """Inverse of :func:`json_tensor`; ValueError if it is not one."""
    if t.dtype != torch.uint8 or t.dim() != 1:
        raise ValueError(f"expected a 1-D uint8 tensor of JSON, got {t.dtype} of shape {tuple(t.shape)}")
    return parse_json(t.numpy().tobytes())


def first_non_finite(tensors: dict[str, Tensor]) -> str | None:
    """Name of the first float tensor (in name order) holding NaN or ±inf."""
    for name in sorted(tensors):
        t = tensors[name]
        if (t.is_floating_point() or t.is_complex()) and not bool(torch.isfinite(t).all()):
            return name
    return None
