# The two commands of the README: `make cookbook` (all notebooks, tiny mode, offline) and `make test`.
# Both create .venv and install the pinned stack on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: cookbook tables test test-latest test-gpu gpu-wheels clean-notebooks data-samples

$(STAMP): requirements.txt requirements-deepspeed.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt
	DS_BUILD_OPS=0 $(PY) -m pip install --quiet --no-build-isolation -r requirements-deepspeed.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

cookbook: $(STAMP)  ## run every notebook offline in the tiny environment; executed copies land in runs/executed/
	tools/tiny-env $(PY) tools/run_cookbook.py

tables: $(STAMP)  ## copy the times `make cookbook` measured and the model-swap matrix into README.md
	tools/tiny-env $(PY) tools/fill_tables.py

test: $(STAMP)  ## unit tests + every notebook through nbval, in the tiny environment (no network)
	tools/tiny-env $(PY) -m pytest

# GPU runner (no package index there): `make gpu-wheels` here, then carry .whl and run, there,
#   bash tools/gpu_run.sh make test-gpu        (or any benchmark, inside tools/tiny-env: see benchmarks/README.md)
gpu-wheels: $(STAMP)  ## wheels the GPU runner lacks, at .venv's versions, into .whl/ (notebook stack included)
	$(PY) tools/gpu_wheels.py notebooks

test-gpu:  ## on the GPU runner: every notebook in the tiny environment on CUDA (bitsandbytes 4-bit on the GPU) + GPU-only tests
	COOKBOOK_REQUIRE_CUDA=1 tools/tiny-env python3 -m pytest notebooks tests/test_gpu.py -rfE

# Not in CI: the same suite against the newest trl/transformers/peft/datasets, to see what drifted.
test-latest: $(STAMP)
	$(PYTHON) -m venv .venv-latest
	.venv-latest/bin/python -m pip install --quiet -r requirements.txt
	DS_BUILD_OPS=0 .venv-latest/bin/python -m pip install --quiet --no-build-isolation -r requirements-deepspeed.txt
	.venv-latest/bin/python -m pip install --quiet --upgrade trl transformers peft datasets
	.venv-latest/bin/python -m pip install --quiet --no-deps -e .
	.venv-latest/bin/python -m pip list 2>/dev/null | grep -iE '^(trl|transformers|peft|datasets) '
	TINY_ENV_PYTHON=.venv-latest/bin/python tools/tiny-env .venv-latest/bin/python -m pytest -p no:randomly -rfE || (echo "drift: see failures above (pinned: requirements.txt)"; exit 1)

clean-notebooks: $(STAMP)  ## strip execution counts, metadata noise and unchecked outputs
	$(PY) tools/clean_notebooks.py notebooks/*.ipynb

data-samples: $(STAMP)  ## regenerate data_samples/ from its seed
	$(PY) data_samples/generate.py
