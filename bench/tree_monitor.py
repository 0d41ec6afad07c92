"""Wall-clock benches' view of a process and its workers: peak summed RSS and CPU seconds, sampled in a thread."""

from __future__ import annotations

import contextlib
import threading


class TreeMonitor:
    """Samples this process and its descendants in a thread: the peak of their summed RSS, and CPU seconds.

    Workers are the forkserver's children, never reaped by this process, so getrusage(RUSAGE_CHILDREN) misses
    them; sampling sees every process while it lives (its last few milliseconds of CPU excepted).
    """

    def __init__(self, every_s: float = 0.02) -> None:
        import psutil

        self.process, self.every_s = psutil.Process(), every_s
        self.cpu: dict[int, float] = {}
        self.baseline = self._sample_once()
        self.cpu_before, self.peak = sum(self.cpu.values()), self.baseline
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _sample_once(self) -> int:
        """Record each process's CPU seconds; return the summed RSS (processes that vanish are skipped)."""
        import psutil

        total = 0
        for proc in [self.process, *self.process.children(recursive=True)]:
            with contextlib.suppress(psutil.Error), proc.oneshot():
                total += proc.memory_info().rss
                times = proc.cpu_times()
                self.cpu[proc.pid] = times.user + times.system
        return total

    def _run(self) -> None:
        """Keep the peak tree RSS until stopped."""
        while not self.done.wait(self.every_s):
            self.peak = max(self.peak, self._sample_once())

    def cpu_seconds(self) -> float:
        """CPU seconds the tree spent since the monitor started."""
        return sum(self.cpu.values()) - self.cpu_before

    def result(self, seconds: float, **extra: object) -> dict:
        """Wall and CPU seconds, peak tree RSS and the RSS before the run, plus `extra`."""
        return {"seconds": seconds, "cpu_seconds": self.cpu_seconds(), "peak_tree_rss": self.peak,
                "rss_before": self.baseline, **extra}

    def __enter__(self) -> TreeMonitor:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()
        self.peak = max(self.peak, self._sample_once())
