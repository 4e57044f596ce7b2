# One venv, installed from exact pins; every target that runs code depends on it.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export DO_NOT_TRACK := true
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export MLFLOW_DISABLE_TELEMETRY := true

.PHONY: demo test lint bench clean server serve

PREFECT_PORT ?= 4200
MLFLOW_PORT  ?= 5000
# Empty: the nightly default of deployments/schedule.py (NIGHTLY_CRON); e.g. make serve CRON="30 3 * * *".
CRON         ?=

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3.11 -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/forgetflow demo

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: $(STAMP)
	$(PY) -m benchmarks.run_all

# Local Prefect server + MLflow UI on loopback, on the state directory's stores (docs/operations.md).
server: $(STAMP)
	$(VENV)/bin/forgetflow server --prefect-port $(PREFECT_PORT) --mlflow-port $(MLFLOW_PORT)

# Serve the nightly-forgetting and forget-now deployments against that server.
serve: $(STAMP)
	PREFECT_API_URL=$${PREFECT_API_URL:-http://127.0.0.1:$(PREFECT_PORT)/api} \
	FORGETFLOW_MLFLOW_UI=$${FORGETFLOW_MLFLOW_UI:-http://127.0.0.1:$(MLFLOW_PORT)} \
	$(VENV)/bin/forgetflow serve $(if $(CRON),--cron "$(CRON)")

clean:
	rm -rf .forgetflow
