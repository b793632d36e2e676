"""The ``trustpg`` command's entry point: light, so that a Ctrl-C while the heavy modules
(torch, gymnasium) are still being imported ends quietly instead of with a traceback."""

from __future__ import annotations

import os
import sys


def main() -> int:
    try:
        from trustpg.app.cli import main as cli_main
    except KeyboardInterrupt:
        print("trustpg: interrupted while starting; nothing was written", file=sys.stderr)
        sys.stderr.flush()
        # Not ``return 130``: a Ctrl-C that lands in ``exec(str)`` (dataclasses build their methods
        # so) marks the interpreter as killed by SIGINT whatever we return (CPython 3.11), and the
        # exit status would be -SIGINT. Nothing was started or written yet, so skip the teardown.
        os._exit(130)
    return cli_main()
