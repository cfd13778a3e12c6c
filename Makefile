# person_search: set-up, tests and demos. Every target installs what it needs first.
#   make install    create .venv and install everything (idempotent)
#   make test       ruff + the whole pytest suite, 20 slowest tests listed (what CI runs)
#   make test-fast  ruff + pytest without the slow end-to-end tests
#   make demo       person-search demo on the toy dataset (CPU, a few minutes)
#   make demo-reid  re-id demo on the toy re-id dataset (CPU, a few minutes)

PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# FORCE_CUDA=1 compiles the CUDA kernels even without a GPU (CI sets it).
export FORCE_CUDA

CSRC := $(shell find person_search/layers/csrc -type f 2>/dev/null)
# The projects' packages (projects/<Name>/<package>/__init__.py) setup.py installs: a new one
# reruns the editable install so that it becomes importable.
PROJECT_PKGS := $(wildcard projects/*/*/__init__.py)
# One stamp per kind of build, so that switching FORCE_CUDA rebuilds the extension.
EXT_STAMP := $(VENV)/.stamp-ext$(if $(filter 1,$(FORCE_CUDA)),-cuda,)

.PHONY: install test test-fast lint format demo demo-reid bench clean-build

install: $(EXT_STAMP)

$(VENV)/.stamp-base: requirements.txt tools/install_detectron2.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet "pip<26" "setuptools<80" wheel
	# torch 2.14 asks for setuptools>=77.0.3: keep it below 80 in the same resolve.
	$(PIP) install --quiet torch==2.14.1 torchvision==0.29.1 "setuptools>=77.0.3,<80"
	bash tools/install_detectron2.sh $(PY)
	$(PIP) install --quiet -r requirements.txt
	touch $@

$(EXT_STAMP): $(VENV)/.stamp-base setup.py $(CSRC) $(PROJECT_PKGS)
	rm -f $(VENV)/.stamp-ext*
	$(PIP) install --quiet --no-deps --no-build-isolation -e .
	$(PY) -c "import person_search._C"
	touch $@

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: install
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

test: lint
	$(PY) -m pytest -q --durations=20 tests

test-fast: lint
	$(PY) -m pytest -q --durations=20 -m "not slow" tests

demo: install
	$(PY) tools/demo.py --output output/demo

demo-reid: install
	$(PY) tools/demo_reid.py --output output/demo_reid

bench: install
	$(PY) benchmarks/bench_ops.py
	$(PY) benchmarks/bench_eval.py
	$(PY) benchmarks/bench_eval_reid.py
	$(PY) benchmarks/bench_train.py

clean-build:
	rm -rf build person_search/_C*.so $(VENV)/.stamp-ext*
