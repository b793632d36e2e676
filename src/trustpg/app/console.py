"""The ``trustpg`` command's entry point: light, so that a Ctrl-C while the heavy modules
(torch, gymnasium) are still being imported ends quietly instead of with a traceback."""

from __future__ import annotations

import sys


def main() -> int:
    try:
        from trustpg.app.cli import main as cli_main
    except KeyboardInterrupt:
        print("trustpg: interrupted while starting; nothing was written", file=sys.stderr)
        return 130
    return cli_main()
