"""Unit tests run tiny tensor ops: one intra-op thread is faster than two and does not fight
with other jobs for the machine's cores. Restored after each test."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
