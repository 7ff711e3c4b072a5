"""Suite-wide settings: one torch thread per test process.

The CI and development machines have 2 cores shared with background work; with two intra-op
threads under load, torch's thread contention makes small CPU tests many times slower.
"""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
