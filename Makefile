.PHONY: test demo lint clean

# Installs what is missing, starts a local Kafka broker, runs ruff, mypy --strict and pytest.
test:
	scripts/test.sh

# Local broker + simulator with live traffic + the connector, printing records as they arrive.
demo:
	scripts/demo.sh

lint:
	scripts/bootstrap.sh
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy cdr_connector

clean:
	deploy/dev/kafka.sh stop || true
	rm -rf deploy/dev/.run .mypy_cache .ruff_cache .pytest_cache
