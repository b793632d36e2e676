"""Ctrl-C held while the command starts (trustpg.app.interrupts), in this process's main thread."""

from __future__ import annotations

import signal

import pytest

from trustpg.app import interrupts
from trustpg.errors import InterruptedWhileStarting


@pytest.fixture
def default_sigint():
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    interrupts._state.update(held=False, pending=False)
    signal.signal(signal.SIGINT, old)


def test_a_ctrl_c_while_held_is_raised_at_release_and_the_default_handler_is_back(default_sigint):
    interrupts.hold()
    signal.raise_signal(signal.SIGINT)  # noted, not raised
    with pytest.raises(InterruptedWhileStarting):
        interrupts.release()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    interrupts.release()  # nothing held any more: a no-op
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)


def test_release_without_a_ctrl_c_raises_nothing(default_sigint):
    interrupts.hold()
    interrupts.release()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_second_ctrl_c_while_held_raises_at_once(default_sigint):
    interrupts.hold()
    signal.raise_signal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)


def test_sigint_ignored_at_start_stays_ignored(default_sigint):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    interrupts.hold()
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    signal.raise_signal(signal.SIGINT)
    interrupts.release()  # nothing was held: nothing raised, SIGINT still ignored
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
