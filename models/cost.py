"""Cost of a training or unlearning run in grad-evals (algorithms.md, 'Units') and wall seconds."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

FORWARD_ONLY_GRAD_EVALS = 1.0 / 3.0  # a forward-only pass counts 1/3 of a forward+backward


@dataclass
class CostMeter:
    """Counts per-example gradient evaluations and wall seconds of one run."""

    grad_evals: float = 0.0
    seconds: float = 0.0
    # CPU seconds of the calling thread over the same blocks (torch runs one thread here):
    # cpu_seconds / seconds is the share of a core the run got, i.e. how busy the machine was.
    cpu_seconds: float = field(default=0.0, compare=False)
    clock: Callable[[], float] = field(default=time.perf_counter, repr=False, compare=False)
    cpu_clock: Callable[[], float] = field(default=time.thread_time, repr=False, compare=False)
    _open_timings: int = field(default=0, repr=False, compare=False)

    def add_gradients(self, examples: int) -> None:
        self.grad_evals += float(examples)

    def add_forwards(self, examples: int) -> None:
        self.grad_evals += FORWARD_ONLY_GRAD_EVALS * examples

    @contextmanager
    def timing(self) -> Iterator[CostMeter]:
        """Add the block's wall seconds. Re-entrant: a timing() nested in another of the same meter
        adds nothing, since the outer block already covers it (a path that times its loop and hands
        the meter to a helper that times itself was counted twice: PCMU-in-shards measured 2x)."""
        outermost = self._open_timings == 0
        start, cpu_start = (self.clock(), self.cpu_clock()) if outermost else (0.0, 0.0)
        self._open_timings += 1
        try:
            yield self
        finally:
            self._open_timings -= 1
            if outermost:
                self.seconds += self.clock() - start
                self.cpu_seconds += self.cpu_clock() - cpu_start

    def as_dict(self) -> dict[str, float]:
        return {"grad_evals": self.grad_evals, "seconds": self.seconds}
