"""Imported with ``--env-module _ctrl_c_at_make``: registers ``CtrlCAtMake-v0``, CartPole whose
first construction in a process, when ``CTRL_C_AT_MAKE=1``, starts a process (as importing MuJoCo
does: its ``glfw`` package runs a second Python interpreter) and sends the terminal's Ctrl-C to the
whole group while that process runs. Building the envs is the last part of a start, and on
``--resume`` it happens after the checkpoint is read."""

import os
import signal
import subprocess
import sys

import gymnasium as gym
from gymnasium.envs.classic_control import CartPoleEnv

_sent = False


class CtrlCAtMake(CartPoleEnv):
    def __init__(self, **kwargs):
        global _sent
        super().__init__(**kwargs)
        if os.environ.get("CTRL_C_AT_MAKE") == "1" and not _sent:
            _sent = True
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.5)"])
            os.killpg(os.getpgrp(), signal.SIGINT)
            if (rc := child.wait()) != 0:
                print(f"the process started while making the env ended with status {rc}", file=sys.stderr)


gym.register("CtrlCAtMake-v0", entry_point=CtrlCAtMake, max_episode_steps=500)
