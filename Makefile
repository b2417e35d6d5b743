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
	$(PIP) -e ".[test,hub]"
	@# The course hub tests (tests/hub) start JupyterHub, whose proxy comes from npm into
	@# .venv/node_modules; without npm they are skipped and say why.
	@$(HUB_PROXY_INSTALL) || echo "npm not found: the course hub tests will be skipped"
	@# The OpenID Connect tests (tests/auth/test_oidc_provider.py) start a real provider:
	@# node-oidc-provider from npm, also into .venv/node_modules; without npm they skip.
	@$(OIDC_PROVIDER_INSTALL) || echo "npm not found: the OpenID Connect tests will be skipped"
	@# Debian's headless Chromium: the web page's browser tests (tests/web, driven by
	@# playwright, which downloads no browser of its own) and the hub's screenshot.
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && \
	  command -v apt-get >/dev/null && apt-get update -qq >/dev/null 2>&1 && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1; } || \
	  echo "chromium not installed: the web page's browser tests will be skipped"
	@# The PostgreSQL job-store tests start a real server: Debian's package, installed when
	@# missing and possible (root + apt); otherwise those tests skip and say why.
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && \
	  command -v apt-get >/dev/null && apt-get update -qq >/dev/null 2>&1 && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null 2>&1; } || \
	  echo "PostgreSQL server not installed: its tests will be skipped"
	@# Python UDFs run sandboxed by bubblewrap (docs/administration/udf-sandbox.md).
	@command -v bwrap >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && \
	  command -v apt-get >/dev/null && apt-get update -qq >/dev/null 2>&1 && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null 2>&1; } || \
	  echo "bubblewrap not installed: UDFs will be refused and their sandbox tests skipped"
	@# The proxy tests (tests/e2e/test_behind_proxy.py) put Debian's nginx in front of terracube.
	@command -v nginx >/dev/null 2>&1 || test -x /usr/sbin/nginx || { [ "$$(id -u)" = 0 ] && \
	  command -v apt-get >/dev/null && apt-get update -qq >/dev/null 2>&1 && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null 2>&1; } || \
	  echo "nginx not installed: the reverse proxy tests will be skipped"
	@touch $@

install: $(BIN)/.installed

run: $(BIN)/.installed
	TERRACUBE_DEV_DEFAULT_USER=$${TERRACUBE_DEV_DEFAULT_USER:-true} \
	$(BIN)/terracube serve --host $(HOST) --port $(PORT) --data-dir $(DATA_DIR)

lint: $(BIN)/.installed-test
	$(BIN)/ruff check src tests

# The tests run in TEST_WORKERS pytest-xdist processes (most of their time is spent waiting for
# the server processes they start); TEST_WORKERS=0 runs them in one process.
TEST_WORKERS ?= 2

test: $(BIN)/.installed-test
	$(BIN)/ruff check src tests
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) $(PYTEST_ARGS)

# Benchmark W1-W5 of ../shared/bench against a real server, the numpy floor and
# openeo-processes-dask: table in bench/results/$(SIZE)/ (data cached in ~/.cache/terracube-bench).
bench: $(BIN)/.installed
	$(BIN)/python bench/run.py --size $(SIZE) $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache

# The training package (notebooks/, docs/user-guide/course.md). `make notebooks` opens JupyterLab
# on notebooks/ against the terracube at HOST:PORT, started in the background on DATA_DIR if
# none answers there (log and pid in DATA_DIR/terracube-course.*), with the real sample packs
# installed into DATA_DIR (wheels kept in SAMPLE_WHEELS). `make notebooks-html` executes every
# notebook and exports it with its outputs to COURSE_HTML.
SAMPLE_WHEELS ?= $(HOME)/.cache/terracube/sample-wheels
COURSE_HTML   ?= build/course-html
COURSE_URL    := http://$(HOST):$(PORT)
COURSE_ENV     = TERRACUBE_URL=$(COURSE_URL) TERRACUBE_USER=$${TERRACUBE_USER:-demo} \
                 TERRACUBE_PASSWORD=$${TERRACUBE_PASSWORD:-demo}
SERVER_UP     := $(BIN)/python -c "import urllib.request as u; u.urlopen('$(COURSE_URL)/openeo/1.2/', timeout=3)"

.PHONY: notebooks notebooks-html notebooks-server

$(BIN)/.installed-notebooks: $(BIN)/.installed
	$(PIP) -e ".[notebooks]"
	@touch $@

notebooks-server: $(BIN)/.installed-notebooks
	$(BIN)/terracube samples install --data-dir $(DATA_DIR) --wheels $(SAMPLE_WHEELS)
	@if $(SERVER_UP) 2>/dev/null; then echo "terracube answers at $(COURSE_URL)"; else \
	  echo "starting terracube at $(COURSE_URL) (log: $(DATA_DIR)/terracube-course.log)"; \
	  TERRACUBE_DEV_DEFAULT_USER=$${TERRACUBE_DEV_DEFAULT_USER:-true} nohup $(BIN)/terracube \
	    serve --host $(HOST) --port $(PORT) --data-dir $(DATA_DIR) \
	    > $(DATA_DIR)/terracube-course.log 2>&1 & echo $$! > $(DATA_DIR)/terracube-course.pid; \
	  for i in $$(seq 180); do $(SERVER_UP) 2>/dev/null && break; sleep 1; done; \
	  $(SERVER_UP) || { echo "terracube did not start:"; tail -20 $(DATA_DIR)/terracube-course.log; exit 1; }; \
	  echo "stop it with: kill $$(cat $(DATA_DIR)/terracube-course.pid)"; fi

notebooks: notebooks-server
	$(COURSE_ENV) $(BIN)/jupyter lab --notebook-dir notebooks $(JUPYTER_ARGS)

notebooks-html: notebooks-server
	@mkdir -p $(COURSE_HTML)
	$(COURSE_ENV) $(BIN)/jupyter nbconvert --to html --execute \
	  --ExecutePreprocessor.timeout=600 --ExecutePreprocessor.kernel_name=python3 \
	  --output-dir $(COURSE_HTML) notebooks/*.ipynb
	@{ echo '<!doctype html><meta charset="utf-8"><title>terracube course</title>'; \
	  echo '<h1>terracube course</h1><ul>'; for f in $(COURSE_HTML)/*.html; do \
	  n=$$(basename $$f); [ $$n = index.html ] || echo "<li><a href=\"$$n\">$${n%.html}</a></li>"; \
	  done; echo '</ul>'; } > $(COURSE_HTML)/index.html
	@echo "course site: $(COURSE_HTML)/index.html"

# The course hub (docs/administration/hub.md): JupyterHub on HOST:PORT with a JupyterLab per
# terracube user and the API on the same port. configurable-http-proxy is installed with npm
# into .venv/node_modules; the real sample packs are installed into DATA_DIR like for notebooks.
HUB_PROXY := $(VENV)/node_modules/.bin/configurable-http-proxy
HUB_PROXY_INSTALL = { test -x $(HUB_PROXY) || { command -v npm >/dev/null && npm install \
	--prefix $(VENV) --no-audit --no-fund --loglevel=error configurable-http-proxy@5; }; }

# The OpenID Connect provider of the tests (tests/support/oidc_provider.mjs).
OIDC_PROVIDER_INSTALL = { test -f $(VENV)/node_modules/oidc-provider/package.json || { command \
	-v npm >/dev/null && npm install --prefix $(VENV) --no-audit --no-fund --loglevel=error \
	oidc-provider@9; }; }

.PHONY: hub

$(BIN)/.installed-hub: $(BIN)/.installed
	$(PIP) -e ".[hub]"
	@$(HUB_PROXY_INSTALL) || { echo "the hub needs npm (Debian: apt-get install npm)"; exit 1; }
	@touch $@

hub: $(BIN)/.installed-hub
	$(BIN)/terracube samples install --data-dir $(DATA_DIR) --wheels $(SAMPLE_WHEELS)
	TERRACUBE_DEV_DEFAULT_USER=$${TERRACUBE_DEV_DEFAULT_USER:-true} \
	$(BIN)/terracube hub --host $(HOST) --port $(PORT) --data-dir $(DATA_DIR)
