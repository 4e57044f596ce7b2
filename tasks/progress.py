"""Where long loops report progress: the CLI installs a Rich sink; flows and tests leave it off."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

ProgressFactory = Callable[[str], Callable[[int, int], None]]
_factory: ProgressFactory | None = None


@contextmanager
def progress_sink(factory: ProgressFactory) -> Iterator[None]:
    """Install `factory(label) -> callback(done, total)` for the duration of a CLI command."""
    global _factory
    previous, _factory = _factory, factory
    try:
        yield
    finally:
        _factory = previous


def reporter(label: str) -> Callable[[int, int], None] | None:
    """A progress callback for `label`, or None when nobody is watching."""
    return _factory(label) if _factory is not None else None
