# terracube: `make run` serves the openEO API on the built-in sample data, `make test` runs the tests.
# Every target installs what it needs into .venv (wheels only; no system GDAL).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST     ?= $(or $(TERRACUBE_HOST),127.0.0.1)
PORT     ?= $(or $(TERRACUBE_PORT),8000)
DATA_DIR ?= $(or $(TERRACUBE_DATA_DIR),var)
PIP := $(BIN)/python -m pip install --disable-pip-version-check --quiet
SIZE ?= small

.PHONY: run test lint install clean bench

$(BIN)/.installed: pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) -e .
	@# Official process definitions for GET /processes; the package's own (Flask) deps are not needed.
	$(PIP) --no-deps "openeo-driver==0.136.0a4"
	@touch $@

$(BIN)/.installed-test: $(BIN)/.installed
	$(PIP) -e ".[test]"
	@# The PostgreSQL job-store tests start a real server: Debian's package, installed when
	@# missing and possible (root + apt); otherwise those tests skip and say why.
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && \
	  command -v apt-get >/dev/null && apt-get update -qq >/dev/null 2>&1 && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null 2>&1; } || \
	  echo "PostgreSQL server not installed: its tests will be skipped"
	@touch $@

install: $(BIN)/.installed

run: $(BIN)/.installed
	TERRACUBE_DEV_DEFAULT_USER=$${TERRACUBE_DEV_DEFAULT_USER:-true} \
	$(BIN)/terracube serve --host $(HOST) --port $(PORT) --data-dir $(DATA_DIR)

lint: $(BIN)/.installed-test
	$(BIN)/ruff check src tests

test: $(BIN)/.installed-test
	$(BIN)/ruff check src tests
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# Benchmark W1-W5 of ../shared/bench against a real server, the numpy floor and
# openeo-processes-dask: table in bench/results/$(SIZE)/ (data cached in ~/.cache/terracube-bench).
bench: $(BIN)/.installed
	$(BIN)/python bench/run.py --size $(SIZE) $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache
