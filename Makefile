.PHONY: test demo lint clean mutate lock

# Installs what is missing, starts a local Kafka broker, runs ruff, mypy --strict and pytest.
test:
	scripts/test.sh

# Local broker + simulator with live traffic + the connector, printing records as they arrive.
demo:
	scripts/demo.sh

# Mutation testing of the core modules against the unit tests (scripts/mutate): a measurement,
# as bench/ is, of about 25 minutes on 2 cores, not part of `make test`; uses the .venv that
# `make test` creates. Writes .mutate/report.md. Options: make mutate MUTATE_ARGS=--help
mutate:
	.venv/bin/python -m scripts.mutate $(MUTATE_ARGS)

# Regenerates requirements.lock and requirements-build.lock (the image's pins, with hashes)
# from pyproject.toml, for the Python of the Dockerfile's base image (scripts/lock.sh).
lock:
	scripts/lock.sh

lint:
	scripts/bootstrap.sh
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy cdr_connector

clean:
	deploy/dev/kafka.sh stop || true
	rm -rf deploy/dev/.run .mypy_cache .ruff_cache .pytest_cache
