"""The nightly schedule's defaults, in one place: deployments/serve.py, `forgetflow serve`, the
Makefile (empty CRON = this default) and deployments/prefect.yaml (a test keeps it equal) use it.

No imports, so the CLI can read the default without importing Prefect."""

NIGHTLY_CRON = "0 2 * * *"  # 02:00 every day
SCHEDULE_TIMEZONE = "UTC"
