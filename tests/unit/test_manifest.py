"""manifest.json: every run says which code, stack, machine and command made it."""

from __future__ import annotations

import json
import re
from pathlib import Path

from trustpg.io.manifest import (
    MANIFEST,
    changed_since_start,
    code_version,
    config_hash,
    consistency,
    cpu_features,
    provenance,
    record_session,
)


def test_config_hash_is_canonical_and_sees_every_field():
    a = {"env": "Hopper-v5", "max_kl": 0.01, "seed": 0}
    assert config_hash(a) == config_hash(dict(reversed(list(a.items()))))
    assert config_hash(a) != config_hash(a | {"seed": 1})
    assert config_hash(a) != config_hash(a | {"max_kl": 0.010000001})
    assert re.fullmatch(r"[0-9a-f]{16}", config_hash(a))


def test_code_version_names_a_commit_or_says_it_cannot():
    v = code_version()
    assert (v["commit"] is None and v["dirty"] is None) or (
        re.fullmatch(r"[0-9a-f]{40}", v["commit"]) and isinstance(v["dirty"], bool)
    )


def test_a_new_run_gets_one_session_and_a_resume_appends_one(tmp_path: Path):
    config = {"env": "CartPole-v1", "seed": 3}
    first = record_session(tmp_path, config, ["trustpg", "train", "--seed", "3"])
    assert len(first["sessions"]) == 1
    s = first["sessions"][0]
    assert s["command"] == "trustpg train --seed 3" and s["config_hash"] == config_hash(config)
    assert {"started", "commit", "dirty", "software", "machine"} <= set(s)
    assert s["machine"]["cores"] >= 1 and s["software"]["torch"]
    second = record_session(tmp_path, config, ["trustpg", "train", "--resume", "x"])
    assert [x["command"] for x in second["sessions"]] == [
        "trustpg train --seed 3",
        "trustpg train --resume x",
    ]
    assert json.loads((tmp_path / MANIFEST).read_text()) == second


def test_an_unreadable_manifest_is_kept_aside_and_replaced(tmp_path: Path):
    (tmp_path / MANIFEST).write_text("{not json")
    m = record_session(tmp_path, {"seed": 0}, ["trustpg"])
    assert len(m["sessions"]) == 1
    assert (tmp_path / (MANIFEST + ".unreadable")).read_text() == "{not json"


def test_consistency_flags_mixed_code_and_uncommitted_changes():
    same = [{"commit": "a", "dirty": False}, {"commit": "a", "dirty": False}]
    assert consistency(same) == {"commit": "a", "clean": True}
    assert consistency([*same, {"commit": "b", "dirty": False}]) == {"commit": None, "clean": True}
    assert consistency([{"commit": "a", "dirty": True}]) == {"commit": "a", "clean": False}
    assert consistency([{"commit": None, "dirty": None}]) == {"commit": None, "clean": False}


def test_provenance_names_time_code_stack_machine_and_command():
    p = provenance(["/usr/bin/bench.py", "--label", "idle machine"])
    assert set(p) == {"started", "commit", "dirty", "software", "machine", "command"}
    assert p["command"] == "bench.py --label 'idle machine'"  # copyable: quoted as a shell reads it
    assert {"torch", "numpy"} <= set(p["software"]) and p["machine"]["cores"] >= 1


def test_every_benchmark_that_writes_results_records_its_provenance():
    """A results file without commit, stack and machine cannot be traced (docs/benchmarks.md)."""
    bench = Path(__file__).resolve().parents[2] / "benchmarks"
    writers = [f for f in sorted(bench.glob("*.py")) if re.search(r"write_text\(json\.dumps", f.read_text())]
    assert len(writers) >= 8
    missing = [f.name for f in writers if not re.search(r"provenance\(\)|record_session", f.read_text())]
    assert missing == ["suite_index.py"], missing  # the index is built from the runs' own manifests


def test_the_recorded_torch_is_the_build_that_ran_not_the_wheel_metadata(monkeypatch):
    """PyPI's CUDA wheels say ``2.14.1`` in their metadata and ``2.14.1+cu130`` in
    ``torch.__version__``; the CPU and CUDA builds compute differently, so a run must record the
    build string (a fresh machine with PyPI's torch showed the two disagree)."""
    import sys
    import types

    from trustpg.io.logger import software_versions

    fake = types.ModuleType("torch")
    fake.__version__ = "9.8.7+cu999"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch", fake)
    assert software_versions()["torch"] == "9.8.7+cu999"
    monkeypatch.delitem(sys.modules, "torch")
    from importlib import metadata

    assert software_versions()["torch"] == metadata.version("torch")  # not imported: the metadata


def test_one_cpu_name_with_other_features_is_named_as_a_change():
    """Two hosts called "AMD EPYC" rounded a Walker2d-v5 run differently from its first update on
    (925fbe3 against 8b9afaf, same code path and packages: docs/reliability.md): the name is not
    enough, so the features are recorded and compared (when both sessions have them)."""

    def on(features: str | None) -> dict:
        machine = {"cpu": "AMD EPYC", "cores": 2} | ({"cpu_features": features} if features else {})
        return {"commit": "a" * 40, "machine": machine, "software": {}}

    assert changed_since_start([on("AVX512, flags 0a1b2c3d"), on("AVX512, flags 0a1b2c3d")]) == []
    assert changed_since_start([on("AVX512, flags 0a1b2c3d"), on("AVX2, flags ecfefe0f")]) == [
        "CPU features AVX512, flags 0a1b2c3d → AVX2, flags ecfefe0f"
    ]
    assert changed_since_start([on(None), on("AVX2, flags ecfefe0f")]) == []  # older runs: unknown


def test_cpu_features_name_torchs_kernel_level_and_the_flags(tmp_path):
    import torch

    features = cpu_features()
    assert features.startswith(f"{torch.backends.cpu.get_cpu_capability()}, flags ")
    assert features == cpu_features()  # stable on one host
    assert provenance(["x"])["machine"]["cpu_features"] == features
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("model name\t: X\nflags\t\t: sse2 avx2 fma\n")
    a = cpu_features(cpuinfo)
    cpuinfo.write_text("model name\t: X\nflags\t\t: fma avx2 sse2\n")
    assert cpu_features(cpuinfo) == a  # the order of the flags does not matter
    cpuinfo.write_text("model name\t: X\nflags\t\t: sse2 avx2 fma avx512f\n")
    assert cpu_features(cpuinfo) != a  # one more feature does
    cpuinfo.unlink()
    assert cpu_features(cpuinfo).endswith("flags unknown")  # no /proc/cpuinfo: said, not guessed


def test_changed_since_start_names_the_commit_cpu_and_packages_that_differ():
    def session(commit: str, cpu: str, torch: str) -> dict:
        return {"commit": commit, "machine": {"cpu": cpu, "cores": 2},
                "software": {"torch": torch, "numpy": "2.4.6", "cores": "2"}}  # fmt: skip

    start = session("a" * 40, "Intel(R) Xeon(R) Processor", "2.13.0+cpu")
    assert changed_since_start([start]) == []
    assert changed_since_start([start, start]) == []
    moved = session("a" * 40, "AMD EPYC", "2.14.1+cu130") | {"machine": {"cpu": "AMD EPYC", "cores": 8}}
    assert changed_since_start([start, start, moved]) == [
        "CPU Intel(R) Xeon(R) Processor → AMD EPYC",
        "torch 2.13.0+cpu → 2.14.1+cu130",
    ]  # the core count alone does not change a run (torch_threads does, and is in the config)
    assert changed_since_start([start, session("b" * 40, start["machine"]["cpu"], "2.13.0+cpu")]) == [
        f"commit {'a' * 40} → {'b' * 40}"
    ]
