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

# `make run` talks to a local Stripe emulator (localstripe) unless real keys are in the environment.
LOCALSTRIPE_PORT ?= 8420
STRIPE_LOCAL := $(if $(STRIPE_SECRET_KEY),,1)

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

ifeq ($(STRIPE_LOCAL),1)
run: export STRIPE_SECRET_KEY := sk_test_localstripe
run: export STRIPE_PUBLISHABLE_KEY := pk_test_localstripe
run: export STRIPE_WEBHOOK_SECRET := whsec_localstripe
run: export STRIPE_API_BASE := http://$(HOST):$(LOCALSTRIPE_PORT)
run: export STRIPE_JS_URL := http://$(HOST):$(LOCALSTRIPE_PORT)/js.stripe.com/v3/
endif
run: $(VENV)/.runtime-installed
	$(BIN)/flask db upgrade
	$(BIN)/flask catalog sync
	$(BIN)/flask demo seed
	$(if $(STRIPE_LOCAL),$(BIN)/python -m portal.billing.payments.emulator)
	$(BIN)/flask run --host $(HOST) --port $(PORT)

test: $(VENV)/.dev-installed
	$(BIN)/pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

migrate-db: $(VENV)/.runtime-installed
	$(BIN)/flask db upgrade
	$(BIN)/flask catalog sync

worker: $(VENV)/.runtime-installed
	$(BIN)/flask worker

clean:
	rm -rf $(VENV) instance .pytest_cache test-artifacts
