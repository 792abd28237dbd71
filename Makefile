# Two commands on a fresh machine:
#   make run    set up .venv (CPU torch first), then run the default experiment
#   make test   run the test suite
PY := .venv/bin/python
export HF_HUB_OFFLINE := 1
export ANONYMIZED_TELEMETRY := False

.PHONY: run test setup

run: setup
	$(PY) -m pipelines.run

test: setup
	$(PY) -m pytest

setup: .venv/.installed

# torch==2.13.0 first: it is a CPU wheel already on disk, while an unpinned torch pulled in by
# sentence-transformers would download several GB of CUDA packages.
.venv/.installed: pyproject.toml
	python3 -m venv .venv
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@
