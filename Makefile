# One task runner for people and CI alike. `make run` and `make test` set themselves up on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint typecheck pytest bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade 'pip>=25.1'
	$(BIN)/python -m pip install --quiet -e '.[all]' --group dev
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/mailslot demo

test: $(STAMP) lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

typecheck: $(STAMP)
	$(BIN)/mypy --strict src

pytest: $(STAMP) js/node_modules
	$(BIN)/pytest $(PYTEST_ARGS)

# The npm packages the tests and benchmarks run against (reference implementations, peers).
js/node_modules: js/package.json js/package-lock.json
	npm ci --prefix js --no-audit --no-fund
	touch js/node_modules

bench: $(STAMP)
	$(BIN)/mailslot bench runtime

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
