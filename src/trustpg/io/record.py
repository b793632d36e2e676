"""One update's statistics: :class:`UpdateRecord`, a frozen dataclass.

Everything that shows per-update numbers is generated from its fields, so they cannot drift apart:
the columns of ``metrics.csv`` (:data:`COLUMNS`), the fields of the progress display
(:data:`PROGRESS_FIELDS`) and the column table in docs/usage.md (:func:`markdown_table`;
``python -m trustpg.io.record docs/usage.md`` rewrites it and a test checks it is current).

A record reads like the dict rows of earlier versions (``record["mean_return"]``, ``dict(record)``),
so callbacks written against rows keep working.
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

from trustpg.core.update import SkipReason

_SKIP_DOC = "why, when `skipped` is 1: " + "; ".join(f"“{r}”" for r in get_args(SkipReason) if r)


def _col(doc: str, *, progress: str = "", fmt: str = "", timing: bool = False) -> Any:
    """A column of metrics.csv: ``doc`` is its row in docs/usage.md; ``progress`` (a label) and
    ``fmt`` (a format spec) put it in the progress display; ``timing`` marks a measured duration
    or rate (it differs between otherwise identical runs)."""
    return field(metadata={"doc": doc, "progress": progress, "fmt": fmt, "timing": timing})


@dataclass(frozen=True)
class UpdateRecord(Mapping[str, Any]):
    """What one update did and cost. ``nan`` marks a quantity the update did not compute."""

    update: int = _col("update number, from 1")
    env_steps: int = _col("environment steps so far, summed over all envs")
    episodes: int = _col("episodes finished so far")
    mean_return: float = _col(
        "mean undiscounted return of the episodes that ended during this update's rollout (raw "
        "rewards, before any normalisation)", progress="return", fmt=".1f",
    )  # fmt: skip
    mean_length: float = _col("mean length of those episodes")
    surrogate_before: float = _col(
        "surrogate objective E[π/π_old · A] before the step (≈ 0 with normalised advantages), "
        "plus entropy_coef · E[H(π)] when the entropy bonus is on"
    )
    surrogate_after: float = _col(
        "the surrogate after the step: the improvement the step claims on the batch"
    )
    predicted_kl: float = _col(
        "½xᵀ(F + λI)x, the damped quadratic model TRPO/NPG scale the step by (`max_kl` for a full "
        "step); the KL's own second-order prediction ½xᵀFx is ½λ‖x‖² smaller"
    )
    measured_kl: float = _col(
        "E_s[KL(π_old ‖ π_new)] measured on the batch after the step; TRPO keeps it ≤ `max_kl`",
        progress="KL", fmt=".4f",
    )  # fmt: skip
    cg_residual: float = _col("residual norm ‖g − (F+λI)x‖ at the end of the conjugate-gradient solve")
    cg_iterations: int = _col("CG iterations used (≤ `cg_iters`)")
    backtracks: int = _col("TRPO line-search backtracks (0 = the full step was accepted)")
    grad_angle: float = _col(
        "angle in degrees between the natural gradient F⁻¹g and the vanilla gradient g (< 90 "
        "when F is positive definite)"
    )
    grad_norm: float = _col("‖g‖, the norm of the policy gradient")
    step_norm: float = _col("‖x‖, the norm of the parameter step actually taken")
    entropy: float = _col("mean entropy of the policy on the batch (before the step)")
    kl_max: float = _col(
        "max over the batch's states of KL(π_old ‖ π_new) after the step (what `--kl max` keeps ≤ `max_kl`)"
    )
    kl_reverse: float = _col(
        "E_s[KL(π_new ‖ π_old)] after the step, the reverse direction (what `--kl reverse` keeps ≤ `max_kl`)"
    )
    ng_angle: float = _col(
        "angle in degrees between the curvature back end's direction and the exact natural "
        "gradient (CG to convergence on `ng_angle_states` states); empty for `--curvature cg`"
    )
    value_loss_before: float = _col(
        "critic mean squared error against the returns, before fitting. The critic fit on batch k "
        "runs between update k and the values of batch k+1 (in a child process or thread while "
        "batch k+1 is collected, `critic_overlap`, `critic_process`), so row k+1 reports the fit "
        "on batch k; row 1 has none (empty)"
    )
    value_loss: float = _col("the same after fitting")
    skipped: int = _col(
        "1 if the step was rejected and θ left unchanged (line search failed, non-finite numbers)"
    )
    skip_reason: SkipReason = _col(_SKIP_DOC)  # noqa: RUF009  (a field(), as every other column)
    seconds: float = _col("wall-clock seconds of this update (rollout + step + critic)", timing=True)
    collect_seconds: float = _col(
        "of `seconds`, those spent collecting the batch (env steps, actions, the critic's values; "
        "includes `critic_wait_seconds` spent waiting inside the collection)",
        timing=True,
    )
    update_seconds: float = _col(
        "of `seconds`, those spent in the policy update (gradient, direction, step)", timing=True
    )
    solve_seconds: float = _col(
        "of `update_seconds`, those the curvature back end took for the direction g̃ and g̃ᵀFg̃ "
        "(not the `ng_angle` diagnostic)",
        timing=True,
    )
    critic_wait_seconds: float = _col(
        "seconds this update waited for the previous batch's critic fit (0 when the fit was "
        "hidden behind the collection)",
        timing=True,
    )
    wall_time: float = _col(
        "seconds summed over updates (excludes evaluation and checkpointing)", timing=True
    )
    steps_per_sec: float = _col("batch size / `seconds`", progress="steps/s", fmt=",.0f", timing=True)
    eval_return: float = _col(
        "mean return of the periodic deterministic evaluation (with `--eval-every`)",
        progress="eval", fmt=".1f",
    )  # fmt: skip
    worker_restarts: int = _col(
        "Ray rollout workers restarted so far (0 without `--workers`, see [scaling.md](scaling.md))"
    )

    # -- read like a dict row -------------------------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        if key not in _NAMES:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(COLUMNS)

    def __len__(self) -> int:
        return len(COLUMNS)

    def replace(self, **changes: Any) -> UpdateRecord:
        """A copy with ``changes`` (e.g. the periodic evaluation's ``eval_return``)."""
        return dataclasses.replace(self, **changes)


#: Columns of metrics.csv, in order.
COLUMNS: list[str] = [f.name for f in dataclasses.fields(UpdateRecord)]
_NAMES = frozenset(COLUMNS)

#: Columns that are measured durations or rates: the rest is bit-identical between runs with the
#: same seed (and between a resumed and an uninterrupted run).
TIMING_COLUMNS: tuple[str, ...] = tuple(
    f.name for f in dataclasses.fields(UpdateRecord) if f.metadata["timing"]
)

#: (column, label, format spec) of the numbers the progress display shows, in order.
PROGRESS_FIELDS: list[tuple[str, str, str]] = [
    (f.name, f.metadata["progress"], f.metadata["fmt"])
    for f in dataclasses.fields(UpdateRecord)
    if f.metadata["progress"]
]


def format_value(value: Any, fmt: str) -> str:
    """``value`` with ``fmt``; "-" for a missing number (nan); text as it is."""
    if isinstance(value, float) and math.isnan(value):
        return "-"
    if isinstance(value, str):
        return value
    return format(value, fmt)


def markdown_table() -> str:
    """The docs/usage.md table of metrics.csv columns, from the fields' docs."""
    lines = ["| column | meaning |", "|---|---|"]
    lines += [f"| `{f.name}` | {f.metadata['doc']} |" for f in dataclasses.fields(UpdateRecord)]
    return "\n".join(lines) + "\n"


_TABLE = re.compile(r"(<!-- metrics-table:start[^\n]*-->\n)(.*?)(<!-- metrics-table:end -->)", re.S)


def table_in(text: str) -> str | None:
    """The generated table between the markers in ``text``, or None if the markers are missing."""
    m = _TABLE.search(text)
    return m.group(2) if m else None


def with_table(text: str) -> str:
    """``text`` with the table between its markers regenerated."""
    return _TABLE.sub(lambda m: m.group(1) + markdown_table() + m.group(3), text)


if __name__ == "__main__":  # python -m trustpg.io.record docs/usage.md
    for name in sys.argv[1:]:
        path = Path(name)
        text = path.read_text()
        if table_in(text) is None:
            sys.exit(f"{path}: no <!-- metrics-table:start --> ... <!-- metrics-table:end --> markers")
        path.write_text(with_table(text))
