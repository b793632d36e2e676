"""UpdateRecord: one definition from which metrics.csv columns, progress fields and docs come."""

from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path

import pytest

from trustpg.io.logger import MetricsLogger, read_metrics
from trustpg.io.record import COLUMNS, PROGRESS_FIELDS, UpdateRecord, markdown_table, with_table


def _record(**over: object) -> UpdateRecord:
    values = {name: 0 for name in COLUMNS} | {"skip_reason": "", "mean_return": math.nan}
    return UpdateRecord(**(values | over))  # type: ignore[arg-type]


def test_columns_progress_fields_and_docs_come_from_the_dataclass_fields():
    names = [f.name for f in dataclasses.fields(UpdateRecord)]
    assert names == COLUMNS
    assert {name for name, _, _ in PROGRESS_FIELDS} <= set(names)
    table = markdown_table().splitlines()
    assert [line.split("`")[1] for line in table[2:]] == names
    assert all(f.metadata["doc"] for f in dataclasses.fields(UpdateRecord))


def test_a_record_is_frozen_and_reads_like_a_row():
    r = _record(update=3, mean_return=1.5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.update = 4  # type: ignore[misc]
    assert r["update"] == 3 and r.get("mean_return") == 1.5 and r.get("nope", 7) == 7
    assert list(r) == COLUMNS and dict(r)["update"] == 3 and "update" in r and "nope" not in r
    with pytest.raises(KeyError):
        r["nope"]
    assert r.replace(eval_return=2.0)["eval_return"] == 2.0 and math.isnan(r["eval_return"]) is False


def test_with_table_rewrites_only_between_the_markers():
    text = "a\n<!-- metrics-table:start x -->\nSTALE\n<!-- metrics-table:end -->\nb\n"
    out = with_table(text)
    assert out.startswith("a\n<!-- metrics-table:start x -->\n| column | meaning |")
    assert out.endswith("<!-- metrics-table:end -->\nb\n") and "STALE" not in out


def test_resuming_a_log_written_with_other_columns_keeps_every_cell_under_its_name(tmp_path: Path):
    """A run resumed after an upgrade that added columns: the old rows are rewritten to the new
    header (new cells empty), so the appended rows line up instead of shifting."""
    path = tmp_path / "metrics.csv"
    old_columns = [c for c in COLUMNS if c not in ("collect_seconds", "update_seconds")] + ["gone"]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=old_columns)
        w.writeheader()
        w.writerow({c: "" for c in old_columns} | {"update": 1, "mean_return": 5.0, "gone": 9})
    logger = MetricsLogger(tmp_path, tensorboard=False, append=True)
    logger.write(_record(update=2, mean_return=6.0, update_seconds=0.25))
    logger.close()
    rows = read_metrics(path)
    assert list(rows[0]) == COLUMNS
    assert [r["update"] for r in rows] == [1.0, 2.0] and [r["mean_return"] for r in rows] == [5.0, 6.0]
    assert math.isnan(float(rows[0]["update_seconds"])) and rows[1]["update_seconds"] == 0.25


def test_plot_reads_a_compressed_log(tmp_path: Path):
    """Benchmarks keep metrics.csv gzipped (benchmarks/suite.py); trustpg plot reads it as is."""
    import gzip
    import json

    from trustpg.io.plotting import expand_runs, load_curve

    run = tmp_path / "run"
    logger = MetricsLogger(run, tensorboard=False)
    for i in (1, 2, 3):
        logger.write(_record(update=i, env_steps=100 * i, mean_return=float(i)))
    logger.close()
    (run / "config.json").write_text(json.dumps({"env": "CartPole-v1", "algo": "trpo", "seed": 0}))
    plain = (run / "metrics.csv").read_bytes()
    (run / "metrics.csv.gz").write_bytes(gzip.compress(plain))
    (run / "metrics.csv").unlink()
    assert expand_runs([tmp_path]) == [run]
    xs, ys = load_curve(run, "env_steps", "mean_return")
    assert list(xs) == [100.0, 200.0, 300.0] and list(ys) == [1.0, 2.0, 3.0]
