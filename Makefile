# fraud-detection: one command per job. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help install up down status feature-store lint audit test run clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || \
	  { echo "Python 3.11 is required (found $$($(PYTHON) --version)); set PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,tools]'
	@touch $@

install: $(STAMP) ## create .venv and install the project, its tools and dev tools (once)

up: install ## install Redis/Prometheus/Kafka when missing and start them; create topics
	$(BIN)/fraud up

down: ## stop every service `make up` started
	@if [ -x $(BIN)/fraud ]; then $(BIN)/fraud down; else echo "nothing installed"; fi

status: install ## show each service's pid, health and memory
	$(BIN)/fraud status

feature-store: install ## `feast apply` on feature_store/ (registry under var/feast)
	$(BIN)/fraud feature-store

lint: install ## ruff (lint and format check) and mypy --strict
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

audit: install ## pip-audit of .venv against PyPI's advisories; fails if any package goes unchecked
	$(BIN)/python .ci/audit.py $(AUDIT_FLAGS)

# The audit's service is not reachable from every machine (see README, "Security"): the tests
# still run there, and the audit says loudly that it was not done.
test: up ## install, start the stack, audit the dependencies, run every test
	$(MAKE) --no-print-directory audit AUDIT_FLAGS=--allow-unchecked
	$(BIN)/pytest tests

run: up ## the main job, end to end on the handbook data
	$(BIN)/fraud demo

clean: down ## stop the stack and delete var/ (Kafka logs, Redis data, models, reports)
	rm -rf var
