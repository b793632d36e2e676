"""Ctrl-C held while the command starts (trustpg.app.interrupts), in this process's main thread."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from trustpg.app import interrupts
from trustpg.errors import InterruptedWhileStarting


@pytest.fixture
def default_sigint():
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    yield
    interrupts._state.update(held=False, pending=False, receiver=None)
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    signal.signal(signal.SIGINT, old)


def _ctrl_c() -> None:
    """A SIGINT to this process, as a terminal sends it (not to one thread, as raise_signal
    does); the handler runs in the main thread within a few instructions."""
    os.kill(os.getpid(), signal.SIGINT)
    for _ in range(200):
        time.sleep(0.001)


def _child_blocks_sigint() -> bool:
    code = "import signal; print(signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, []))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    return out.stdout.strip() == "True"


def test_a_ctrl_c_while_held_is_raised_at_release_and_the_default_handler_is_back(default_sigint):
    interrupts.hold()
    _ctrl_c()  # noted, not raised
    with pytest.raises(InterruptedWhileStarting):
        interrupts.release()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    interrupts.release()  # nothing held any more: a no-op
    with pytest.raises(KeyboardInterrupt):
        _ctrl_c()


def test_release_without_a_ctrl_c_raises_nothing(default_sigint):
    interrupts.hold()
    interrupts.release()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_second_ctrl_c_while_held_raises_at_once(default_sigint):
    interrupts.hold()
    _ctrl_c()
    with pytest.raises(KeyboardInterrupt):
        _ctrl_c()


@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="no signal masks (Windows)")
def test_processes_started_while_held_have_sigint_blocked_and_later_ones_do_not(default_sigint):
    """Third-party imports start processes while trustpg starts (MuJoCo's glfw runs a Python to
    read a library version): in the terminal's process group, they must not die of its Ctrl-C."""
    assert not _child_blocks_sigint()
    interrupts.hold()
    assert _child_blocks_sigint()
    interrupts.release()
    assert not _child_blocks_sigint()
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, [])


def test_sigint_ignored_at_start_stays_ignored(default_sigint):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    interrupts.hold()
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    signal.raise_signal(signal.SIGINT)
    interrupts.release()  # nothing was held: nothing raised, SIGINT still ignored
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
