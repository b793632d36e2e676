"""The ``trustpg`` command's entry point: light, and the first thing it does is hold Ctrl-C
(:mod:`trustpg.app.interrupts`), so that a Ctrl-C while the heavy modules (torch, gymnasium) are
still being imported ends quietly, with exit status 130 and nothing written."""

from __future__ import annotations

import os
import sys

from trustpg.app import interrupts


def main() -> int:
    interrupts.hold()
    try:
        from trustpg.app.cli import main as cli_main
    except KeyboardInterrupt:  # a second Ctrl-C while importing
        print("trustpg: interrupted while starting; nothing was written", file=sys.stderr)
        sys.stderr.flush()
        # Not ``return 130``: CPython (3.11) can record a KeyboardInterrupt raised during imports
        # as unhandled even once caught, and the exit status would be -SIGINT. Nothing was
        # started or written yet, so skip the teardown.
        os._exit(130)
    return cli_main()
