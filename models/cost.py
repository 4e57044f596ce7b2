"""Cost of a training or unlearning run in grad-evals (algorithms.md, 'Units') and wall seconds."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

FORWARD_ONLY_GRAD_EVALS = 1.0 / 3.0  # a forward-only pass counts 1/3 of a forward+backward


@dataclass
class CostMeter:
    """Counts per-example gradient evaluations and wall seconds of one run."""

    grad_evals: float = 0.0
    seconds: float = 0.0
    _started: float | None = field(default=None, repr=False)

    def add_gradients(self, examples: int) -> None:
        self.grad_evals += float(examples)

    def add_forwards(self, examples: int) -> None:
        self.grad_evals += FORWARD_ONLY_GRAD_EVALS * examples

    @contextmanager
    def timing(self) -> Iterator[CostMeter]:
        start = time.perf_counter()
        try:
            yield self
        finally:
            self.seconds += time.perf_counter() - start

    def as_dict(self) -> dict[str, float]:
        return {"grad_evals": self.grad_evals, "seconds": self.seconds}
