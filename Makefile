# Every target bootstraps .venv itself: `make demo` and `make test` are all a fresh machine needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast bench lint venv clean

venv: $(STAMP)

# The CPU torch wheel is installed first and pinned: a bare `torch` requirement would pull a
# multi-GB CUDA build on these machines.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/imgprivacy reproduce docl-mnist --out reports/docl-mnist

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

# The whole suite, slow real-data tests included (this is what CI runs).
test: $(STAMP) lint
	$(PY) -m pytest -q

# The quick loop: skips tests marked slow.
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

bench: $(STAMP)
	$(PY) benchmarks/bench_bank.py --out reports/bench

clean:
	rm -rf $(VENV) reports .pytest_cache .ruff_cache
