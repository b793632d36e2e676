"""Imported with ``--env-module _ctrl_c_in_finalizer``: a terminal's Ctrl-C that arrives while a
finalizer runs, as one can while torch and gymnasium import (they run weakref callbacks, e.g.
importlib's module-lock cleanup). Python cannot raise out of a finalizer: it prints "Exception
ignored" and the Ctrl-C is lost, the run trains on; unless trustpg holds Ctrl-C while starting."""

import os
import signal


class _Finalizer:
    def __del__(self) -> None:
        os.killpg(os.getpgrp(), signal.SIGINT)  # the terminal signals the whole foreground group


_Finalizer()  # collected at once: its finalizer runs during this import
