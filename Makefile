# latentinfer: two commands matter.
#   make demo   set up (virtualenv in .venv) and run the main job on a shipped example
#   make test   set up and run the test suite (what CI runs)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

# Corpus files (training data) are named relative to the corpus root: $LATENTINFER_CORPUS, os.pathsep-separated
# folders, first match wins (README "Corpus"). The default here: ./corpus (what `simulate` makes), then the shared
# CAMB corpus of the development machine; tests that need a corpus file skip where it is absent.
LATENTINFER_CORPUS ?= $(CURDIR)/corpus:/work/shared/data/camb
export LATENTINFER_CORPUS

.PHONY: setup test test-all demo bench clean

setup: $(VENV)/.installed

# torch is pinned through constraints.txt (a CPU build); harmonic declares runtime requirements that
# conflict with torch 2.13 (setuptools==68, jupyter), so it goes in with --no-deps and
# its real needs are dependencies of latentinfer itself (pyproject.toml).
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt -e '.[test]'
	$(PIP) install -q --no-deps harmonic==1.3.1
	touch $@

test: setup
	bash scripts/install-browser.sh
	$(PY) -m pytest -m "not slow" -q

test-all: setup
	bash scripts/install-browser.sh
	$(PY) -m pytest -q

demo: setup
	$(VENV)/bin/latentinfer run examples/demo.yaml --out runs/demo

bench: setup
	$(PY) -m benchmarks

clean:
	rm -rf runs build dist *.egg-info
