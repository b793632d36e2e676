"""Imported with ``--env-module _child_at_start``: a process started while trustpg starts, as
importing MuJoCo starts one (its ``glfw`` package runs a second Python interpreter to read the
GLFW library's version), and a terminal's Ctrl-C to the whole group while that interpreter starts.
Unprotected, it dies of it (``Fatal Python error: init_import_site``, a traceback, or status -2)."""

import os
import signal
import subprocess
import sys

_child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.5)"])
os.killpg(os.getpgrp(), signal.SIGINT)  # the terminal signals the whole foreground group
if (_rc := _child.wait()) != 0:
    print(f"the process started at import ended with status {_rc}", file=sys.stderr)
