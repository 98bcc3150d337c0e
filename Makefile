# nengo-hybrid. Every target depends on the virtual environment, so the first command
# typed on a fresh clone installs what it needs.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# the data directory: DATA=... on the command line, else $NENGO_HYBRID_DATA, else ./data
DATA ?= $(or $(NENGO_HYBRID_DATA),./data)
DATA_ABS := $(abspath $(DATA))
export TF_CPP_MIN_LOG_LEVEL ?= 2
# oneDNN's kernels, which TensorFlow 2.12 leaves off on CPUs without AVX-512 (see nengo_hybrid/__init__.py)
export TF_ENABLE_ONEDNN_OPTS ?= 1
export NENGO_HYBRID_DATA := $(DATA_ABS)
# the experiment profile: paper (the paper's protocol) or quick (minutes)
PROFILE ?= paper

.PHONY: setup data locnet cae unet sweeps finetune-vs-direct binary-ternary reproduce test demo benchmark \
	bench-env clean

setup: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=23.2" wheel
	# TensorFlow is pinned in the same resolve as nengo-dl, which asks for a bare
	# tensorflow>=2.3.4 and would otherwise pull a TensorFlow it cannot import.
	$(PY) -m pip install --quiet -e ".[test,cluster]" "tensorflow==2.12.1"
	touch $(STAMP)

# Fetches the real data sets from their official sources into $(DATA).
# DATASETS=cifar10 fetches CIFAR-10 (the binary-vs-ternary table's own data set) as well; without
# it the table runs on ten Caltech-101 categories that `make data` extracts.
DATASETS ?=
data: setup
	$(PY) -m data_prep.download $(DATASETS) --data "$(DATA_ABS)"

# Table 1 of the paper (LocNet on Caltech-101 airplanes) into results/locnet/
# (PROFILE=quick: results/locnet_quick/); fetches the data first if $(DATA) lacks it.
locnet: setup
	@test -d "$(DATA_ABS)/caltech101" || $(MAKE) --no-print-directory data
	$(PY) experiments/locnet.py run --profile $(PROFILE) --data "$(DATA_ABS)" $(ARGS)

# Table 2 and Figure 3 of the paper (the CAE on MSD Task04 hippocampus slices) into
# results/cae/ (PROFILE=quick: results/cae_quick/); fetches the data first if $(DATA) lacks it.
cae: setup
	@test -d "$(DATA_ABS)/msd_hippocampus" || $(MAKE) --no-print-directory data
	$(PY) experiments/cae.py run --profile $(PROFILE) --data "$(DATA_ABS)" $(ARGS)

# Table 1 and Figures 3-4 of the second paper (the three-stage spiking U-Net on MSD Task04
# hippocampus, 3 losses, cross-validated by subject).  Without PROFILE on the command line it
# runs the cpu profile (2 CPU cores, <= 90 minutes) into results/unet_cpu/; PROFILE=paper is
# the paper's protocol (a GPU job) into results/unet/, PROFILE=quick minutes.
UNET_PROFILE = $(if $(filter file,$(origin PROFILE)),cpu,$(PROFILE))
unet: setup
	@test -d "$(DATA_ABS)/msd_hippocampus" || $(MAKE) --no-print-directory data
	$(PY) experiments/unet.py run --profile $(UNET_PROFILE) --data "$(DATA_ABS)" $(ARGS)

# The second paper's analyses of a trained U-Net run (the one `make unet` writes for the same
# PROFILE, trained first if missing): the output-threshold sweep (Table 2, Figure 5) and the
# timestep x threshold-scaling sweep (Figure 6A) into results/threshold_sweep_cpu/ and
# results/timestep_sweep_cpu/ (PROFILE=paper: results/threshold_sweep/, results/timestep_sweep/).
sweeps: setup
	@test -d "$(DATA_ABS)/msd_hippocampus" || $(MAKE) --no-print-directory data
	$(PY) experiments/threshold_sweep.py run --profile $(UNET_PROFILE) --data "$(DATA_ABS)" $(ARGS)
	$(PY) experiments/timestep_sweep.py run --profile $(UNET_PROFILE) --data "$(DATA_ABS)" $(ARGS)

# Fine-tuning the converted U-Net against training it directly (Table 3, Figure 6B), from the
# U-Net run of the same PROFILE (trained first if missing), into results/finetune_vs_direct_cpu/.
finetune-vs-direct: setup
	@test -d "$(DATA_ABS)/msd_hippocampus" || $(MAKE) --no-print-directory data
	$(PY) experiments/finetune_vs_direct.py run --profile $(UNET_PROFILE) --data "$(DATA_ABS)" $(ARGS)

# Binary vs ternary input spikes (Tables 4 and 5): a VGG-5 classifier (on CIFAR-10 if $(DATA)/cifar10
# holds it, else ten Caltech-101 categories at 32x32) and the U-Net, each trained, converted and
# fine-tuned on [0, 1] and on [-1, 1] inputs, into results/binary_ternary_cpu/ (PROFILE as for unet).
binary-ternary: setup
	@test -d "$(DATA_ABS)/msd_hippocampus" -a -d "$(DATA_ABS)/caltech101" || $(MAKE) --no-print-directory data
	$(PY) experiments/binary_ternary.py run --profile $(UNET_PROFILE) --data "$(DATA_ABS)" $(ARGS)

# Every experiment of both papers in order (each with its default profile, or PROFILE=...), then
# results/README.md: every table with its floor and the paper's numbers, and links to the figures.
reproduce: setup
	$(MAKE) --no-print-directory locnet cae unet sweeps finetune-vs-direct binary-ternary
	$(PY) -m nengo_hybrid.results_page --profile $(if $(filter file,$(origin PROFILE)),default,$(PROFILE))

# The whole suite: unit tests, tests on the real data, and every notebook (the tests that
# read one trained quick U-Net run share a worker, so it is trained once).
test: setup
	@if [ ! -d "$(DATA_ABS)/caltech101" ]; then \
	  echo "No data at $(DATA_ABS): tests that need it are skipped, notebooks are not run."; \
	  echo "Run 'make data' to fetch it, or point DATA=... (or NENGO_HYBRID_DATA) at a folder holding caltech101/."; \
	  $(PY) -m pytest -n 2 --dist loadgroup tests; \
	else \
	  $(PY) -m pytest -n 2 --dist loadgroup tests --nbmake notebooks; \
	fi

# Runs the neuron notebook and keeps the executed copy, figures included.
demo: setup
	@mkdir -p results/notebooks
	$(PY) -m nengo_hybrid.notebooks notebooks/00_hybrid_neurons.ipynb results/notebooks

benchmark: setup
	$(PY) benchmarks/neurons.py --data "$(DATA_ABS)"
	$(PY) benchmarks/locnet.py --data "$(DATA_ABS)"
	$(PY) benchmarks/cae.py --data "$(DATA_ABS)"
	$(PY) benchmarks/rate_counting.py --data "$(DATA_ABS)" --params results/benchmarks/cae_run/ann
	$(PY) benchmarks/surrogate.py

# The benchmark-only environment of benchmarks/surrogate.py's snnTorch peer (PyTorch).
# On this project's machines torch==2.13.0 resolves to a local CPU build (2.13.0+cpu, no
# CUDA packages); elsewhere pip may fetch the CUDA build, several GB. Never used by CI or
# the tests; without it the benchmark reports the peer as not installed.
bench-env:
	$(PYTHON) -m venv .venv-bench && .venv-bench/bin/pip install torch==2.13.0 snntorch numpy

clean:
	rm -rf $(VENV) .pytest_cache
