"""Prefect deployments of the forgetting flow: serve.py (`forgetflow serve`), prefect.yaml, parameters."""
