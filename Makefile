# Two commands on a fresh machine with Python 3.11: `make run` and `make test`.
# Both create .venv on first use and reinstall when pyproject.toml changes.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test test-all lint format notebooks clean-data

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] in ((3, 11), (3, 12)), \
		"steel-keras needs Python 3.11 or 3.12, found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,course]"
	@# The grader's sandbox (docs/security.md): installed where we are root on Debian/Ubuntu;
	@# elsewhere a warning, never a failed install.
	@command -v bwrap >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& apt-get update -qq && apt-get install -y -qq bubblewrap >/dev/null; } \
		|| echo "warning: bubblewrap (bwrap) is not installed, so steel-keras grade runs" \
			"student code without a sandbox; install it (apt-get install bubblewrap)"
	@touch $@

## The main job: the baseline on the embedded synthetic data (generated on first use):
## train, tune, evaluate and write runs/baseline/ (report.md, metrics.json, submission.csv).
run: $(STAMP)
	$(BIN)/steel-keras baseline --out runs/baseline

## The tests CI runs (slow ones are behind `-m slow`; see `make test-all`).
test: $(STAMP)
	$(BIN)/python -m pytest -q

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m "slow or not slow"

lint: $(STAMP)
	$(BIN)/ruff check steel_keras tests benchmarks course
	$(BIN)/ruff format --check steel_keras tests benchmarks

format: $(STAMP)
	$(BIN)/ruff format steel_keras tests benchmarks

## The chapters' paired notebooks, regenerated from course/NN_slug.py (jupytext).
notebooks: $(STAMP)
	$(BIN)/steel-keras course sync

clean-data:
	rm -rf datasets/synthetic runs
