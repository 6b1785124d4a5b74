# arttl — one command to install + test, one to install + demo.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install test test-full demo lint format bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## create .venv and install arttl with dev extras

lint: $(STAMP) ## ruff check + format check
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

format: $(STAMP) ## apply ruff fixes and formatting
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench

test: $(STAMP) lint ## lint + fast test suite (what CI runs)
	$(BIN)/pytest -m "not slow and not gpu" -q

test-full: $(STAMP) lint ## lint + every CPU test, slow ones included
	$(BIN)/pytest -m "not gpu" -q

demo: $(STAMP) ## train the demo experiment on the embedded AHE images and print the table
	$(BIN)/python -m arttl.train +experiment=demo

bench: $(STAMP) ## run the benchmarks in bench/ and print their tables
	$(BIN)/python bench/run_all.py

clean: ## remove outputs (keeps .venv)
	rm -rf outputs multirun .pytest_cache
