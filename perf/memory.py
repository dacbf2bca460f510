"""Peak memory of a block of code: peak RSS on a CPU, peak allocated memory on a GPU.

On Linux the kernel keeps each process's peak RSS (VmHWM) and lets the process reset it
(`/proc/self/clear_refs`), so `PeakMemory` reads the exact peak instead of sampling; where the
reset is refused it falls back to sampling /proc in a background thread. Measure each path in
its own process when comparing peaks: freed memory a process keeps would otherwise count for
the next path.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import torch

from lm.memory import _status_field, resident_bytes

__all__ = ["PeakMemory", "resident_bytes", "peak_resident_bytes"]


def peak_resident_bytes() -> int:
    """The highest RSS of this process since it started or since the last reset (VmHWM)."""
    return _status_field("VmHWM")


def _reset_peak_resident() -> bool:
    """Set VmHWM back to the current RSS (Linux ≥ 4.0); False where that is not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return peak_resident_bytes() <= resident_bytes() + 4096


class PeakMemory:
    """`with PeakMemory(device) as peak: ...` then `peak.peak` (bytes held at the peak: RSS on a
    CPU, torch's allocation on a GPU) and `peak.extra_bytes` (above what was held at the start)."""

    def __init__(self, device: torch.device | str = "cpu", interval: float = 0.01):
        self.device = torch.device(device)
        self.interval = interval
        self.start = 0
        self.peak = 0
        self._exact = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, resident_bytes())
            time.sleep(self.interval)

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start = self.peak = torch.cuda.memory_allocated(self.device)
            return self
        self.start = self.peak = resident_bytes()
        self._exact = _reset_peak_resident()
        if not self._exact:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device)
            return
        if self._exact:
            self.peak = max(self.peak, peak_resident_bytes())
            return
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, resident_bytes())

    @property
    def extra_bytes(self) -> int:
        return self.peak - self.start
