"""release_free_memory hands the heap's free pages back to the system."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

# In a new process: heap blocks freed under a live one at the heap's top stay resident
# until trimmed (a 16 MB free first raises glibc's mmap threshold, as a freed index copy does).
_PROGRAM = """
import os

import numpy as np
from app.heap import release_free_memory

def rss_mb():
    pages = int(open("/proc/self/statm").read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20

np.ones(16 << 18, np.float32)  # 16 MB, freed at once: then 1 MB blocks come from the heap
blocks = [np.ones(1 << 18, np.float32) for _ in range(200)]
del blocks[:-1]
before = rss_mb()
release_free_memory()
print(before - rss_mb())
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_freed_heap_blocks_leave_the_resident_set() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _PROGRAM], check=True, capture_output=True, text=True
    ).stdout
    assert float(out) > 150  # of the ~199 MB freed
