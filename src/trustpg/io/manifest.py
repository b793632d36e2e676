"""Where a run's numbers came from: ``manifest.json`` in every run directory (DESIGN §7).

A manifest names the code (trustpg's git commit and whether the tree had uncommitted changes;
the installed version when trustpg is not a git checkout), the software stack (package versions),
the machine (CPU model, its instruction-set features, usable cores, OS), the full command and a
hash of the complete config.
It is written when a run starts; each ``--resume`` (or ``Agent.learn`` continuing in the same
directory) appends a session, so a run continued with other code says so and a results index
can keep it out of a headline row (``benchmarks/suite.py``).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from trustpg.errors import UserError
from trustpg.io.logger import software_versions
from trustpg.io.rundir import read_json, write_json

MANIFEST = "manifest.json"
#: Seconds a ``git`` query may take before the commit is recorded as unknown (never hang a run).
GIT_TIMEOUT = 5.0


def config_hash(config: dict[str, Any]) -> str:
    """sha256 of the config's canonical JSON (sorted keys), first 16 hex digits: equal hashes
    mean every field is equal."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=GIT_TIMEOUT, check=False
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def code_version() -> dict[str, Any]:
    """trustpg's git commit and dirty flag (None when the package is not in a git checkout, e.g.
    installed from a wheel: then its version number is all there is)."""
    source = Path(__file__).resolve().parents[1]  # src/trustpg
    top = _git(["rev-parse", "--show-toplevel"], source)
    if top is None or not (Path(top) / "src" / "trustpg").is_dir():
        return {"commit": None, "dirty": None}
    commit = _git(["rev-parse", "HEAD"], source)
    # Only the code counts: results and docs written by the run itself do not make it dirty.
    status = _git(["status", "--porcelain", "--untracked-files=no", "--", "src", "pyproject.toml"], Path(top))
    return {"commit": commit, "dirty": None if status is None else bool(status)}


CPUINFO = Path("/proc/cpuinfo")


def _cpuinfo_field(name: str, cpuinfo: Path) -> str | None:
    """The first ``name : value`` line of Linux's cpuinfo (None when absent or unreadable)."""
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith(name):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo; platform.processor() elsewhere)."""
    return _cpuinfo_field("model name", CPUINFO) or platform.processor() or platform.machine()


def cpu_features(cpuinfo: Path = CPUINFO) -> str:
    """The instruction sets that decide the arithmetic: PyTorch's kernel level (e.g. AVX2, AVX512)
    and a hash of the CPU's feature flags. Two hosts with one model name can differ here (a
    hypervisor masks features; a model name such as "AMD EPYC" spans generations), and then
    round differently from the first operation on (docs/reliability.md, Determinism)."""
    import torch

    flags = " ".join(sorted((_cpuinfo_field("flags", cpuinfo) or "").split()))
    digest = hashlib.sha256(flags.encode()).hexdigest()[:8] if flags else "unknown"
    return f"{torch.backends.cpu.get_cpu_capability()}, flags {digest}"


def provenance(command: list[str] | None = None) -> dict[str, Any]:
    """Where a result comes from: time, code (commit, dirty), software stack, machine and the
    command (``sys.argv`` unless given). Every benchmark record carries it (docs/benchmarks.md)."""
    argv = sys.argv if command is None else command
    return {
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        **code_version(),
        "software": software_versions(),
        "machine": {
            "cpu": cpu_model(),
            "cpu_features": cpu_features(),
            "cores": os.cpu_count(),
            "os": platform.platform(),
        },
        "command": shlex.join([Path(argv[0]).name, *argv[1:]]) if argv else "",
    }


def session(config: dict[str, Any], command: list[str] | None = None) -> dict[str, Any]:
    """One start of training in a run directory: its provenance and the config's hash."""
    return {**provenance(command), "config_hash": config_hash(config)}


def record_session(run: Path, config: dict[str, Any], command: list[str] | None = None) -> dict[str, Any]:
    """Write ``run/manifest.json`` for a new run, or append this session to an existing one.
    Returns the manifest. An unreadable manifest is replaced (the old one kept beside it)."""
    path = run / MANIFEST
    now = session(config, command)
    manifest: dict[str, Any] | None = None
    if path.is_file():
        try:
            manifest = read_json(path)
        except UserError:
            path.replace(path.with_name(MANIFEST + ".unreadable"))
    if not isinstance(manifest, dict) or not isinstance(manifest.get("sessions"), list):
        manifest = {"sessions": []}
    manifest["sessions"].append(now)
    manifest.update(consistency(manifest["sessions"]))
    write_json(path, manifest)
    return manifest


def consistency(sessions: list[dict[str, Any]]) -> dict[str, Any]:
    """Summary fields of a manifest: the commit all sessions ran (None if they differ or any is
    unknown) and whether every session ran committed code."""
    commits = {s.get("commit") for s in sessions}
    commit = commits.pop() if len(commits) == 1 else None
    return {"commit": commit, "clean": all(s.get("dirty") is False for s in sessions)}


def changed_since_start(sessions: list[dict[str, Any]]) -> list[str]:
    """What the last session ran on that differs from the first: the commit, the CPU model and
    features (when both sessions recorded them) and the package versions, each as ``"what first →
    now"``. Bit-exact resume holds only when this is empty: another CPU or library build rounds
    differently from its first operation on (docs/reliability.md, Determinism)."""
    if len(sessions) < 2:
        return []
    first, last = sessions[0], sessions[-1]
    was_machine, now_machine = first.get("machine", {}), last.get("machine", {})
    pairs = [("commit", first.get("commit"), last.get("commit")),
             ("CPU", was_machine.get("cpu"), now_machine.get("cpu"))]  # fmt: skip
    if "cpu_features" in was_machine and "cpu_features" in now_machine:
        pairs.append(("CPU features", was_machine["cpu_features"], now_machine["cpu_features"]))
    was, now = first.get("software", {}), last.get("software", {})
    pairs += [(name, was[name], now[name]) for name in sorted(was.keys() & now.keys()) if name != "cores"]
    return [f"{what} {a} → {b}" for what, a, b in pairs if a != b]
