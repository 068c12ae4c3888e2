# Two entry points for a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The torch this repository is tested with; the package itself accepts a range (pyproject.toml).
TORCH_PIN ?= torch==2.13.0

.PHONY: setup demo test test-fast bench clean

$(STAMP): pyproject.toml Makefile
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q '$(TORCH_PIN)'
	$(BIN)/pip install -q -e '.[all]'
	$(BIN)/python -m asqhw.sim.warm asqhw/golden/networks/digits_cnn_asq_post4.npz
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/asqhw conform
	$(BIN)/asqhw run --model asqhw/golden/networks/digits_cnn_asq_post4.npz --data digits

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The inner loop: everything but the tests that build or simulate hardware (marker rtl).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not rtl"

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_sim.py

clean:
	rm -rf $(VENV)
