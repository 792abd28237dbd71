# Two commands on a fresh machine:
#   make run    set up .venv (CPU torch first), then compare the three strategies on the default experiment
#   make test   run the test suite
PY := .venv/bin/python
export HF_HUB_OFFLINE := 1
export ANONYMIZED_TELEMETRY := False

.PHONY: run test setup browser services report app

run: setup
	$(PY) -m pipelines.run experiment=compare

test: setup browser services
	$(PY) -m pytest

report: setup
	$(PY) -m pipelines.report

app: setup   # the interactive app on http://127.0.0.1:8501
	$(PY) -m pipelines.cli app

setup: .venv/.installed

# Debian's Chromium for the two browser tests (MLflow UI, report page); as root it is installed,
# otherwise those two tests are skipped and say why.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium not found: the browser tests will be skipped"; fi; }

# The team-scale integration tests (tests/test_team_scale.py): Debian's PostgreSQL (as root, like
# chromium; no system service is started, the tests initdb into a temp folder) and the `team` group
# (Ray, psycopg2). hydra-ray-launcher 1.2.2 pins cloudpickle<3, which joblib 1.6 refuses; it works with
# cloudpickle 3 (tested), so it goes in without its pins.
services: setup .venv/.team-installed
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	  else echo "postgresql not found: the MLflow-server tests will be skipped"; fi; }

.venv/.team-installed: pyproject.toml .venv/.installed
	$(PY) -m pip install --quiet -e ".[dev,team]"
	$(PY) -m pip install --quiet --no-deps hydra-ray-launcher==1.2.2
	touch $@

# torch==2.13.0 first: it is a CPU wheel already on disk, while an unpinned torch pulled in by
# sentence-transformers would download several GB of CUDA packages.
# llama-cpp-python compiles (~6 min on 2 cores, then pip caches the wheel). GGML_NATIVE=OFF with AVX2:
# a native build also compiles the AMX kernels, which crash (SIGSEGV) on hosts that expose AMX
# but do not let processes use it, as on our CI machines.
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON

.venv/.installed: pyproject.toml
	python3 -m venv .venv
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PY) -m pip install --quiet "llama-cpp-python[server]==0.3.36"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@
