import mmap
import sys

import pytest
import torch

from detkit.engine.benchmark.memory import PeakMemory, current_rss_mib, reset_rss_peak


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the RSS high-water mark is reset through /proc")
def test_the_rss_peak_covers_the_window_since_start():
    memory = PeakMemory(torch.device("cpu"))
    block = resident_block(64 * 2**20)
    block.close()
    assert reset_rss_peak()
    memory.start()
    quiet_peak = memory.rss_mib()
    assert quiet_peak == pytest.approx(current_rss_mib(), abs=16)  # the 64 MiB freed before start() no longer counts
    block = resident_block(64 * 2**20)
    assert memory.rss_mib() >= quiet_peak + 60
    assert memory.cuda_mib() is None
    block.close()


def resident_block(size: int) -> mmap.mmap:
    """``size`` bytes of fresh anonymous pages, written so they are resident. A fresh mapping, not
    numpy: after other tests the heap may hold freed pages that are already resident, and
    reusing them would not raise the RSS at all."""
    block = mmap.mmap(-1, size)
    block.write(b"\x01" * size)
    return block
