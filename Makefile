# Two commands that work on a fresh machine:  make demo  ·  make test
# Each creates the virtual environment first (torch's CPU wheel before anything that needs it).
SHELL  := /bin/bash
VENV   ?= .venv
PY     := $(VENV)/bin/python
SHARED ?= ../shared
# Offline machines: use the pre-filled Hugging Face cache beside the checkout when there is one.
OFFLINE_HF := if [ -f $(SHARED)/offline-hf.sh ]; then . $(SHARED)/offline-hf.sh; fi

.PHONY: setup demo test lint clean-reports test-lowest

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

# The suite's core under the lowest versions pyproject.toml admits (ci/lowest-constraints.txt), in a
# venv of its own; not in CI (minutes of installing). LOWEST_TESTS: the files it runs.
LOWEST_VENV  ?= .venv-lowest
LOWEST_TESTS ?= tests/test_data.py tests/test_config.py tests/test_report.py tests/test_stats.py \
                tests/test_metrics_and_loss.py tests/test_train.py tests/test_cli_e2e.py
test-lowest:
	python3 -m venv $(LOWEST_VENV)
	$(LOWEST_VENV)/bin/python -m pip install -q torch==2.13.0
	$(LOWEST_VENV)/bin/python -m pip install -q -c ci/lowest-constraints.txt -e ".[dev]"
	@$(OFFLINE_HF); $(LOWEST_VENV)/bin/python -m pytest -q -p no:cacheprovider $(LOWEST_TESTS) $(PYTEST_ARGS)
