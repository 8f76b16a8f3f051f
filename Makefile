# The two commands: `make run` (the product, embedded mode, demo data) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export FLASK_APP := wsgi
HOST ?= 127.0.0.1
PORT ?= 5000
# Links in emails (the demo invitation too) point at this server unless told otherwise.
export PUBLIC_BASE_URL ?= http://$(HOST):$(PORT)
# Under pytest-xdist: one worker per core (CI has 2).
PYTEST_WORKERS ?= auto

.PHONY: run test lint migrate-db worker clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.runtime-installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev-installed: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(VENV)/.runtime-installed $@

run: $(VENV)/.runtime-installed
	$(BIN)/flask db upgrade
	$(BIN)/flask catalog sync
	$(BIN)/flask demo seed
	$(BIN)/flask run --host $(HOST) --port $(PORT)

test: $(VENV)/.dev-installed
	$(BIN)/pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .

migrate-db: $(VENV)/.runtime-installed
	$(BIN)/flask db upgrade
	$(BIN)/flask catalog sync

worker: $(VENV)/.runtime-installed
	$(BIN)/flask worker

clean:
	rm -rf $(VENV) instance .pytest_cache test-artifacts
