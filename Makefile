# Every target bootstraps .venv itself: `make demo` and `make test` are all a fresh machine needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo demo-service reproduce test test-fast bench bench-service lint venv clean

venv: $(STAMP)

# The CPU torch wheel is installed first and pinned: a bare `torch` requirement would pull a
# multi-GB CUDA build on these machines. pyproject's `ml` range must admit this version
# (tests/test_packaging.py); `.[dev]` pulls `service`, which pulls `ml` and `client`.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The main jobs end to end in a few minutes: the DOCL service on 127.0.0.1 with 10 MNIST users
# training guards on their own digit and uploading them through the edge client, uploads checked
# over HTTP beside the in-process decisions; then a short anonymizer run on pen-digits with its
# before / after picture. Both end by themselves and print where their outputs are.
demo: $(STAMP)
	$(VENV)/bin/imgprivacy demo service --out reports/demo/service --replay 300 --train-per-user 500
	$(VENV)/bin/imgprivacy demo anonymizer --out reports/demo/anonymizer

# Every paper reproduction at full size (several hours on a 2-core CPU), results in reports/.
reproduce: $(STAMP)
	$(VENV)/bin/imgprivacy reproduce docl-mnist --out reports/docl-mnist
	$(VENV)/bin/imgprivacy reproduce docl-cifar10 --out reports/docl-cifar10
	$(VENV)/bin/imgprivacy reproduce docl-faces --out reports/docl-faces
	$(VENV)/bin/imgprivacy reproduce docl-strong-adversaries --all-pairs --out reports/docl-strong-adversaries
	$(VENV)/bin/imgprivacy reproduce anonymizer-pendigits --out reports/anonymizer-pendigits
	$(VENV)/bin/imgprivacy reproduce anonymizer-faces --out reports/anonymizer-faces

# The live DOCL service demo: starts the service on 127.0.0.1 (SQLite), 10 MNIST users train on
# their digit with the edge client and upload, MNIST/Fashion-MNIST uploads replayed over HTTP and
# compared with the in-process run; stops by itself.
demo-service: $(STAMP)
	$(VENV)/bin/imgprivacy demo service --out reports/docl-service

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/lint-imports .importlinter

# The whole suite, slow real-data tests included (this is what CI runs), beside a throwaway
# PostgreSQL cluster on loopback for the service tests (scripts/with-postgres.sh).
test: $(STAMP) lint
	scripts/with-postgres.sh $(PY) -m pytest -q --durations=25

# The quick loop: skips tests marked slow.
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

bench: $(STAMP)
	$(PY) benchmarks/bench_bank.py --out reports/bench
	$(PY) benchmarks/bench_precision.py --out reports/bench
	$(PY) benchmarks/bench_training.py --out reports/bench
	$(PY) benchmarks/bench_service.py --out reports/bench

# Load test of the running service over loopback (N = 100 and 1000 models, 1/8/32 clients).
bench-service: $(STAMP)
	$(PY) benchmarks/bench_service.py --out reports/bench

clean:
	rm -rf $(VENV) reports .pytest_cache .ruff_cache
