"""Saying once when a fast path does not apply (DESIGN §5): no silent 2-3× slowdowns."""

from __future__ import annotations

import logging

log = logging.getLogger("trustpg")
_said: set[tuple[str, str]] = set()


def announce_off(path: str, reason: str, instead: str, *, costly: bool = True) -> None:
    """Log ``"<path> off: <reason>; <instead>"`` once per process for each (path, reason): a
    warning when the fallback costs more than ~2× (``costly``), else info."""
    if (path, reason) in _said:
        return
    _said.add((path, reason))
    log.log(logging.WARNING if costly else logging.INFO, "%s off: %s; %s", path, reason, instead)


def reset() -> None:
    """Forget what was said (tests)."""
    _said.clear()
