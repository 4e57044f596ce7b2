"""Library loggers in run logs at WARNING: what matters reaches Prefect, chatter does not."""

from __future__ import annotations

import logging

# Exported to Prefect as PREFECT_LOGGING_EXTRA_LOGGERS (data_contracts.settings), so their records
# land in the flow-run logs; at INFO they would bury the run's own lines.
LIBRARY_LOGGERS = ("mlflow", "great_expectations", "alembic", "py.warnings")


class LibraryFloor(logging.Filter):
    """Drop library records below `level`, whatever level their own logger has.

    A level on the library's top logger is not enough: a child logger with its own level passes
    its records up to the parent's handlers regardless (GX sets
    `great_expectations.data_context.types.base` to INFO when it is imported)."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= self.level:
            return True
        return not any(
            record.name == name or record.name.startswith(f"{name}.") for name in LIBRARY_LOGGERS
        )


def quiet_libraries(level: int = logging.WARNING) -> None:
    """Library loggers at `level`, and a floor on every handler their records reach (Prefect's
    API and console handlers, attached to these loggers and to the root)."""
    handlers = list(logging.getLogger().handlers)
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(level)
        handlers += logger.handlers
    for handler in handlers:
        for old in [f for f in handler.filters if isinstance(f, LibraryFloor)]:
            handler.removeFilter(old)
        handler.addFilter(LibraryFloor(level))
