# Two commands that work on a fresh machine:  make demo  ·  make test
# Each creates the virtual environment first (torch's CPU wheel before anything that needs it).
SHELL  := /bin/bash
VENV   ?= .venv
PY     := $(VENV)/bin/python
SHARED ?= ../shared
# Offline machines: use the pre-filled Hugging Face cache beside the checkout when there is one.
OFFLINE_HF := if [ -f $(SHARED)/offline-hf.sh ]; then . $(SHARED)/offline-hf.sh; fi

.PHONY: setup demo test lint clean-reports

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev,dashboard]"
	touch $@

demo: setup
	@$(OFFLINE_HF); $(VENV)/bin/ablate run experiments/bs_lr.toml

# pytest's exit code 5 (no test selected, e.g. with -k) is not a failure.
test: setup
	@$(OFFLINE_HF); $(PY) -m pytest -q $(PYTEST_ARGS); rc=$$?; [ $$rc -eq 5 ] && rc=0; exit $$rc

lint: setup
	$(VENV)/bin/ruff check ablation tests benchmarks
