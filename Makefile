# arttl — one command to install + test, one to install + demo.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install test test-full test-shared demo reproduce lint format bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## create .venv and install arttl with dev extras

lint: $(STAMP) ## ruff check + format check
	$(BIN)/ruff check src tests bench docs
	$(BIN)/ruff format --check src tests bench docs

format: $(STAMP) ## apply ruff fixes and formatting
	$(BIN)/ruff check --fix src tests bench docs
	$(BIN)/ruff format src tests bench docs

test: $(STAMP) lint ## lint + fast test suite on what the repository carries (what CI runs)
	$(BIN)/pytest -m "not slow and not gpu and not shared_data" -q

test-shared: $(STAMP) ## the readers on the whole real collections in ../shared/data (CI runs it where present)
	$(BIN)/pytest -m "shared_data" -q

test-full: $(STAMP) lint ## lint + every CPU test, slow ones included
	$(BIN)/pytest -m "not gpu" -q

DEMO_OUT := outputs/demo
DEMO_SALIENCY := [data/demo/paintings/Baroque/1011.jpg,data/demo/paintings/Impressionism/10042.jpg,data/demo/paintings/Expressionism/10006.jpg]

demo: $(STAMP) ## the paper's chain in miniature on embedded real art: θ̂ from paintings, θ vs θ̂ on museum objects
	@echo "== 1/5 θ̂: ImageNet EfficientNet-Lite0 (θ) fine-tuned on 280 paintings (7 styles)"
	rm -rf $(DEMO_OUT)
	$(BIN)/python -m arttl.train +experiment=demo_paintings hydra.run.dir=$(DEMO_OUT)/paintings
	@echo "== 2/5 museum objects (5 types) from θ: off-the-shelf and fine-tuning"
	$(BIN)/python -m arttl.train -m +experiment=demo_objects mode=off_the_shelf,fine_tune hydra.sweep.dir=$(DEMO_OUT)/objects_theta
	@echo "== 3/5 museum objects from θ̂ (the painting-tuned network), and from scratch"
	$(BIN)/python -m arttl.train -m +experiment=demo_objects_from_paintings mode=off_the_shelf,fine_tune hydra.sweep.dir=$(DEMO_OUT)/objects_theta_hat
	$(BIN)/python -m arttl.train +experiment=demo_objects mode=scratch hydra.run.dir=$(DEMO_OUT)/objects_scratch
	@echo "== 4/5 the paper's Tables 2 and 3 from these runs"
	$(BIN)/python -m arttl.report $(DEMO_OUT) out_dir=$(DEMO_OUT)/report
	@echo "== 5/5 where θ and θ̂ look on three paintings"
	$(BIN)/python -m arttl.saliency images=$(DEMO_SALIENCY) models=[imagenet,checkpoints/demo_paintings/tf_efficientnet_lite0-fine_tune.ckpt] backbone=tf_efficientnet_lite0 out_dir=$(DEMO_OUT)/saliency
	@echo "tables: $(DEMO_OUT)/report/report.md · saliency: $(DEMO_OUT)/saliency/saliency_visual_backprop.png"

DATA   ?= ../shared/data
BUDGET ?= cpu
OUT    ?= outputs/study
DOCS   ?= docs/results
reproduce: $(STAMP) ## docs/results.md's real-art study from ../shared/data (DATA=...; ~1.5 h on 2 cores; resumable; BUDGET=gpu: full scale)
	PY=$(BIN)/python DATA=$(DATA) BUDGET=$(BUDGET) OUT=$(OUT) DOCS=$(DOCS) bash docs/reproduce.sh

bench: $(STAMP) ## run the benchmarks in bench/ and print their tables
	$(BIN)/python bench/run_all.py

clean: ## remove outputs (keeps .venv)
	rm -rf outputs multirun .pytest_cache
