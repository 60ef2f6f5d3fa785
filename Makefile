# The two entry points of the README: `make demo` and `make test` (what CI runs, via .ci/run).
PYTHON ?= python3

.PHONY: setup setup-test demo test lint coq pytest bench-cpu

setup:
	bash scripts/setup.sh

setup-test:
	bash scripts/setup.sh --coq

demo: setup
	pypm demo

# Everything CI checks: lint and the layer contracts, the Coq proofs (and the extracted
# interpreter), the pytest suite (which ends with its passed / skipped counts).
test: setup-test
	$(MAKE) lint coq pytest

lint:
	$(PYTHON) -m ruff check .
	lint-imports

coq:
	$(MAKE) -C coq

pytest:
	$(PYTHON) -m pytest -q

bench-cpu:
	$(PYTHON) benchmarks/match_scaling.py
	$(PYTHON) benchmarks/rewrite_scaling.py
