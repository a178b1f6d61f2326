import sys

import numpy as np
import pytest
import torch

from detkit.engine.benchmark.memory import PeakMemory, current_rss_mib, reset_rss_peak


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the RSS high-water mark is reset through /proc")
def test_the_rss_peak_covers_the_window_since_start():
    memory = PeakMemory(torch.device("cpu"))
    block = np.ones(64 * 2**20, dtype=np.uint8)  # 64 MiB, touched so it is resident
    del block
    assert reset_rss_peak()
    memory.start()
    quiet_peak = memory.rss_mib()
    assert quiet_peak == pytest.approx(current_rss_mib(), abs=16)  # the 64 MiB freed before start() no longer counts
    block = np.ones(64 * 2**20, dtype=np.uint8)
    assert memory.rss_mib() >= quiet_peak + 60
    assert memory.cuda_mib() is None
    del block
