# SenCity — the two commands: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test bench lint fmt typecheck clean web

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[dev,postgres]'
	$(PY) -m pip install --quiet --no-deps 'ngsildclient==0.5.2'
	touch $(STAMP)

# the IOC front end (frontend/, npm) built into the package's static/build/
WEB_BUILD := src/sencity/web/static/build/app.js
WEB_SRC   := $(wildcard frontend/src/*) frontend/build.mjs
frontend/node_modules/.package-lock.json: frontend/package.json frontend/package-lock.json
	cd frontend && npm ci --no-audit --no-fund --loglevel=error

$(WEB_BUILD): frontend/node_modules/.package-lock.json $(WEB_SRC)
	cd frontend && node build.mjs

## web: build the IOC front end when missing or stale (make run and make test do it)
web: $(WEB_BUILD)

## run: install what is needed and start the demo city on http://127.0.0.1:8080
run: $(STAMP) $(WEB_BUILD)
	$(VENV)/bin/sencity demo

## test: install the dev dependencies, lint, type-check and run every test
test: $(STAMP) $(WEB_BUILD) lint typecheck
	$(PY) -m pytest --durations=15

## bench: run the benchmarks (figures go to docs/BENCHMARKS.md by hand)
bench: $(STAMP)
	@command -v wrk >/dev/null || (apt-get install -y -qq wrk >/dev/null 2>&1 || echo "install wrk for the HTTP benchmark")
	$(PY) -m bench

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

typecheck: $(STAMP)
	$(VENV)/bin/mypy

fmt: $(STAMP)
	$(VENV)/bin/ruff format src tests bench
	$(VENV)/bin/ruff check --fix src tests bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
