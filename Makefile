# nengo-hybrid: every target depends on the virtual environment, so the first
# command typed on a fresh clone installs what it needs.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DATA ?= $(or $(NENGO_HYBRID_DATA),./data)
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: setup test notebooks benchmark clean

setup: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=23.2" wheel
	# TensorFlow is pinned in the same resolve as nengo-dl, which asks for a bare
	# tensorflow>=2.3.4 and would otherwise pull a TF it cannot import.
	$(PY) -m pip install --quiet -e ".[test,benchmarks]" "tensorflow==2.12.1"
	touch $(STAMP)

test: setup
	NENGO_HYBRID_DATA=$(DATA) $(PY) -m pytest -n 2 tests --nbmake notebooks

benchmark: setup
	$(PY) benchmarks/neurons.py

clean:
	rm -rf $(VENV) results/benchmarks .pytest_cache
