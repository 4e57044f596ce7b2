"""Progress of long loops as a plain `callback(done, total)`: models/ draws nothing itself.

The CLI installs a Rich sink (tasks/progress.py, flows/cli.py); flows and tests pass None. A
callback only reads counters: it must never touch an RNG or the math, so runs stay bit-for-bit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Progress = Callable[[int, int], None]


def counter(progress: Progress | None, total: int) -> Callable[[], None]:
    """A `tick()` reporting one more finished unit of `total` (a no-op without a callback).

    Reports (0, total) at once, so a bar appears before the first (possibly long) unit ends."""
    if progress is None:
        return lambda: None
    done = 0
    progress(0, total)

    def tick() -> None:
        nonlocal done
        done += 1
        progress(done, total)

    return tick


def epoch_hook(progress: Progress | None, epochs: int) -> Callable[[int, Any], None] | None:
    """An `on_epoch_end(epoch, model)` hook (models.mlp) reporting `progress(epoch, epochs)`."""
    if progress is None:
        return None
    progress(0, epochs)
    return lambda epoch, _model: progress(epoch, epochs)
