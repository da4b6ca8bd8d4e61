# Two commands on a fresh machine with only python3: `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint setup clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

## Fetch today's announcement (or the bundled sample offline), score, write digests to var/outbox
run: $(STAMP)
	$(BIN)/digestbot once --demo

## Run the whole test suite (pytest exit 5, "no tests collected", counts as failure here)
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) var
