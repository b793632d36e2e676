"""``trustpg tune``'s results: every trial in a table (``trials.md``, ``trials.csv``, printed) and
the best trial's config as ``best.toml``, which ``trustpg train --config best.toml`` trains again."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trustpg.config.train_config import TrainConfig
from trustpg.io.rundir import write_atomic

if TYPE_CHECKING:
    from trustpg.app.tune import Tune

#: Fields the best config leaves out: where tune put the trial and how it displayed it
#: (``trustpg train`` names and places the new run itself).
NOT_IN_BEST = ("run_dir", "run_name", "progress", "eval_every")
PRINTED_ROWS = 30


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "—" if math.isnan(v) else f"{v:.4g}"
    return "—" if v is None else str(v)


def trial_rows(study: Any, t: Tune) -> tuple[list[str], list[list[Any]]]:
    """Header and one row per trial, best value first (unfinished trials last)."""
    names = [n for n, p in t.space.items() if p.kind != "fixed"]
    header = ["trial", "state", "value", "env_steps", *names, "run_dir"]

    def key(tr: Any) -> tuple[int, float, int]:
        ok = tr.value is not None
        return (0 if ok else 1, -(tr.value if ok else 0.0), tr.number)

    rows = []
    for tr in sorted(study.trials, key=key):
        state = tr.state.name.lower() + (" (Ctrl-C)" if tr.user_attrs.get("interrupted") else "")
        value = tr.value if tr.value is not None else math.nan
        params = [tr.params.get(n) for n in names]
        rows.append([tr.number, state, value, tr.user_attrs.get("env_steps"), *params,
                     tr.user_attrs.get("run_dir", "")])  # fmt: skip
    return header, rows


def markdown(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def to_toml(config: dict[str, Any]) -> str:
    """Flat TOML of a config dict (TrainConfig's value types; None is left out: unset)."""
    lines = []
    for name, v in config.items():
        if v is None:
            continue
        if isinstance(v, bool):
            text = "true" if v else "false"
        elif isinstance(v, int | float):
            text = repr(v)
        elif isinstance(v, list | tuple):
            text = "[" + ", ".join(repr(x) for x in v) + "]"
        else:
            text = json.dumps(str(v), ensure_ascii=False)
        lines.append(f"{name} = {text}")
    return "\n".join(lines) + "\n"


def best_config(study: Any) -> tuple[Any, dict[str, Any]] | None:
    """The best complete trial and its run's config without :data:`NOT_IN_BEST`, or None."""
    complete = [tr for tr in study.trials if tr.state.name == "COMPLETE"]
    if not complete:
        return None
    best = max(complete, key=lambda tr: tr.value)
    saved = json.loads((Path(best.user_attrs["run_dir"]) / "config.json").read_text())
    defaults = TrainConfig().to_dict()
    config = {k: v for k, v in saved.items() if k not in NOT_IN_BEST}
    assert all(defaults[k] is None for k, v in config.items() if v is None)  # None = leave out
    return best, config


def write_results(study: Any, t: Tune) -> None:
    header, rows = trial_rows(study, t)
    table = markdown(header, rows)
    write_atomic(t.out / "trials.md", table)
    buf = io.StringIO()
    csv.writer(buf).writerows([header, *rows])
    write_atomic(t.out / "trials.csv", buf.getvalue())
    shown = markdown(header, rows[:PRINTED_ROWS])
    print(shown, end="")
    if len(rows) > PRINTED_ROWS:
        print(f"({len(rows) - PRINTED_ROWS} more rows in {t.out / 'trials.md'})")
    found = best_config(study)
    if found is None:
        print(f"no trial finished yet; wrote {t.out / 'trials.md'} and {t.out / 'trials.csv'}")
        return
    best, config = found
    header_text = (f"# trustpg tune: best of {len(study.trials)} trials, trial {best.number} "
                   f"(final evaluation {best.value:.2f}), run {best.user_attrs['run_dir']}\n"
                   f"# train it again: trustpg train --config {t.out / 'best.toml'}\n")  # fmt: skip
    write_atomic(t.out / "best.toml", header_text + to_toml(config))
    print(f"best: trial {best.number}, {best.value:.2f}. Wrote {t.out / 'trials.md'}, "
          f"{t.out / 'trials.csv'} and {t.out / 'best.toml'} (trustpg train --config "
          f"{t.out / 'best.toml'} trains it again)")  # fmt: skip
