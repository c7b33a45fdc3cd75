# Two commands on a fresh machine: `make demo` (the MNIST EoS demo) and `make test`.
# `make test` runs `make lint` (ruff) first. Both create (or reuse) .venv/ and install eoskit with pinned, CPU-friendly dependencies.
# constraints.txt pins torch==2.13.0 (a CPU build): an unpinned torch pulls a multi-GB CUDA build.

VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.stamp-install
OUT    ?= runs/mnist-demo

.PHONY: demo test lint bench bench-peers mutation venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q $(if $(wildcard /opt/wheels),--find-links /opt/wheels) -c constraints.txt -e '.[test,ray,integrations]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/eoskit run --config examples/mnist_demo.toml --out $(OUT) --overwrite

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests examples benchmarks

test: lint
	$(PY) -m pytest -q

# curvlinops without its dependencies (the bench extra holds those it uses): through
# backpack it declares torchvision, whose PyPI build does not import beside this CPU torch
bench-peers: $(STAMP)
	$(PY) -m pip install -q -c constraints.txt -e '.[bench]'
	$(PY) -m pip install -q --no-deps -c constraints.txt curvlinops-for-pytorch

bench: bench-peers
	$(VENV)/bin/eoskit bench sharpness --json runs/bench-sharpness.json

# mutation testing of the numerical core (not in CI: hours on 2 cores); see benchmarks/results/mutation.md
mutation: $(STAMP)
	$(PY) -m pip install -q -c constraints.txt -e '.[mutation]'
	VENV=$(VENV) scripts/mutation.sh

clean:
	rm -rf $(VENV) runs
