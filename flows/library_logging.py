"""Library loggers in run logs at WARNING: what matters reaches Prefect, chatter does not."""

from __future__ import annotations

import logging

# Exported to Prefect as PREFECT_LOGGING_EXTRA_LOGGERS (data_contracts.settings), so their records
# land in the flow-run logs; at INFO they would bury the run's own lines.
LIBRARY_LOGGERS = ("mlflow", "great_expectations", "alembic", "py.warnings")


def quiet_libraries(level: int = logging.WARNING) -> None:
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(level)
