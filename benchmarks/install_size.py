"""Download size of trustpg's dependencies and of each extra: the README's "What each part costs" table.

Run from anywhere (network: PyPI only; about 15 minutes, nearly all of it pip's resolver; defaults
--cache /tmp/trustpg-wheels, --out benchmarks/results/install_size.json):

    python benchmarks/install_size.py [--cache DIR] [--out FILE]

pip resolves `.`, `torch==<the version . got>` and `.[EXTRA]` for every extra of pyproject.toml
(`pip install --dry-run --ignore-installed --report`) against PyPI alone: this machine's pip
configuration (config files, the constraint file they name, PIP_* variables but the certificate
and timeout) is ignored through PIP_CONFIG_FILE=/dev/null. The wheels are those pip picks here
(so Linux x86-64 and this Python). Rows: torch's CUDA build is the closure of `torch==V`, sized by
an HTTP HEAD's Content-Length (nothing downloaded); trustpg's other dependencies are the packages of
`.` outside that closure; an extra is the packages `.[EXTRA]` has and `.` has not (same name and
version). Those are fetched with `pip download --no-deps` into --cache and sized on disk (`du -b`),
and each file's size is checked against its HEAD, which shows that the HEAD sizes are exact.
MB = 10^6 bytes.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import tomllib
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from trustpg.io.manifest import provenance

ROOT = Path(__file__).resolve().parents[1]
INDEX = "https://pypi.org/simple"
KEEP = {"PIP_CERT", "PIP_DEFAULT_TIMEOUT", "PIP_DISABLE_PIP_VERSION_CHECK"}
ENV = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") or k in KEEP}
ENV["PIP_CONFIG_FILE"] = os.devnull
DOC = __doc__ or ""
Pkg = dict[str, Any]  # name, version, url, bytes, measured_by


def pip(*args: str) -> str:
    cmd = [sys.executable, "-m", "pip", *args]
    return subprocess.run(cmd, env=ENV, cwd=ROOT, check=True, capture_output=True, text=True).stdout


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def resolve(req: str) -> tuple[dict[str, Pkg], dict[str, Any]]:
    """Packages (by normalized name) that `pip install req` would download, and the report."""
    with tempfile.TemporaryDirectory() as tmp:
        report_file = Path(tmp) / "report.json"
        flags = ["--dry-run", "--ignore-installed", "--quiet", "--index-url", INDEX]
        pip("install", *flags, "--report", str(report_file), req)
        report = json.loads(report_file.read_text())
    pkgs = {}
    for item in report["install"]:
        url = item["download_info"]["url"]
        if url.startswith("file:"):  # trustpg itself
            continue
        meta = item["metadata"]
        pkgs[norm(meta["name"])] = {"name": meta["name"], "version": meta["version"], "url": url}
    return pkgs, report


def head_size(url: str) -> int:
    with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=60) as resp:
        return int(resp.headers["Content-Length"])


def measure(pkgs: list[Pkg], cache: Path | None) -> list[Pkg]:
    """Set each package's bytes: downloaded into cache (checked against HEAD), or by HEAD alone."""
    for p in pkgs:
        p["bytes"], p["measured_by"] = head_size(p["url"]), "HEAD Content-Length"
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        files = {p["name"]: cache / urllib.parse.unquote(p["url"].rsplit("/", 1)[1]) for p in pkgs}
        missing = [p["url"] for p in pkgs if not files[p["name"]].exists()]
        if missing:
            pip("download", "--no-deps", "--quiet", "--index-url", INDEX, "-d", str(cache), *missing)
        for p in pkgs:
            size = files[p["name"]].stat().st_size
            if size != p["bytes"]:
                sys.exit(f"{p['name']}: {size} bytes on disk, {p['bytes']} by HEAD")
            p["bytes"], p["measured_by"] = size, "pip download --no-deps, size on disk"
    return sorted(pkgs, key=lambda p: -p["bytes"])


def row(what: str, pkgs: list[Pkg]) -> dict[str, Any]:
    total = sum(p["bytes"] for p in pkgs)
    return {"what": what, "packages": len(pkgs), "bytes": total, "list": pkgs}


def mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n < 1e6 else f"{n / 1e6:,.0f} MB"


def main() -> None:
    parser = argparse.ArgumentParser(description=DOC.split("\n")[0])
    parser.add_argument("--cache", type=Path, default=Path("/tmp/trustpg-wheels"))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/install_size.json")
    args = parser.parse_args()
    urllib.request.urlopen(f"{INDEX}/pip/", timeout=60).close()  # PyPI reachable, or fail here
    config = pip("config", "list").splitlines()
    assert not any("constraint" in line or "index" in line for line in config), config
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]

    print("resolving . (about 2 minutes per resolution)", file=sys.stderr)
    base, report = resolve(".")
    torch_pkgs, _ = resolve(f"torch=={base['torch']['version']}")
    rows = [row("torch, CUDA build (PyPI's default on Linux)", measure(list(torch_pkgs.values()), None))]
    others = [p for key, p in base.items() if key not in torch_pkgs]
    rows.append(row("trustpg's other dependencies (`pip install -e .`)", measure(others, args.cache)))
    for extra in sorted(extras, key=lambda e: e == "test"):  # test (nearly all of them) last
        print(f"resolving .[{extra}]", file=sys.stderr)
        pkgs, _ = resolve(f".[{extra}]")
        added = [p for key, p in pkgs.items() if base.get(key, {}).get("version") != p["version"]]
        for p in added:
            if norm(p["name"]) in base:
                p["replaces_version_of_base"] = base[norm(p["name"])]["version"]
        names = ", ".join(re.split(r"[\s<>=!~\[;]", r, maxsplit=1)[0] for r in extras[extra])
        rows.append(row(f"extra `{extra}` ({names})", measure(added, args.cache)))

    result = {
        "provenance": provenance(),
        "date": datetime.date.today().isoformat(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "pip_version": report["pip_version"],
        "resolver_environment": report["environment"],
        "index": INDEX,
        "pip_config_in_effect": config,
        "method": DOC.split("\n\n", 3)[3].strip(),
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print("| what | packages | download |\n|---|---|---|")
    for r in rows:
        print(f"| {r['what']} | {r['packages']} | {mb(r['bytes'])} |")


if __name__ == "__main__":
    main()
