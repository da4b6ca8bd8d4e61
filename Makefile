# Two commands on a fresh machine with only python3: `make run` and `make test`.
# Both install exactly requirements-dev.lock (every package pinned, with its hashes): pip
# bootstraps the locked uv, and uv makes .venv match the lock (it also removes what the lock
# no longer lists). `make lock` refreshes the locks to the newest versions the ranges allow.
# --compile-bytecode: uv writes no .pyc by default, and where PYTHONDONTWRITEBYTECODE is set
# (CI here) Python never caches one either, so every process recompiled scikit-learn & co. from
# source: `import sklearn` cost ~6 s of CPU a process, a test's subprocess start ~13 s.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := requirements-dev.lock
UV := $(BIN)/uv
# One resolution for every platform and every Python the project supports.
COMPILE = $(UV) pip compile --quiet --universal --generate-hashes --python-version 3.11 --upgrade

.PHONY: run test lint lock setup clean

$(STAMP): $(LOCK) requirements/uv.lock pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes --no-deps -r requirements/uv.lock
	$(UV) pip sync --quiet --require-hashes --compile-bytecode --python $(BIN)/python $(LOCK)
	$(UV) pip install --quiet --python $(BIN)/python --no-deps --no-build-isolation -e .
	touch $(STAMP)

setup: $(STAMP)

## Fetch today's announcement (or the bundled sample offline), score, write digests to var/outbox
run: $(STAMP)
	$(BIN)/digestbot once --demo

## Run the whole test suite (pytest exit 5, "no tests collected", counts as failure here)
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache

## Refresh the locks to the newest versions the ranges allow; `make test` then proves the upgrade
lock: $(STAMP)
	$(COMPILE) pyproject.toml requirements/build.in -o requirements.lock
	$(COMPILE) pyproject.toml requirements/build.in --extra test -o $(LOCK)
	$(COMPILE) requirements/uv.in -o requirements/uv.lock

clean:
	rm -rf $(VENV) var
