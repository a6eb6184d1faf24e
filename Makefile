# One task runner for people and CI alike. `make run` and `make test` set themselves up on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint typecheck pytest bench clean

$(STAMP): pyproject.toml hatch_build.py src/mailslot/migrate/_locktrack.c src/mailslot/runtime/_speedups.c
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade 'pip>=25.1'
	$(BIN)/python -m pip install --quiet -e '.[all]' --group dev
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/mailslot serve

test: $(STAMP) lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

typecheck: $(STAMP)
	$(BIN)/mypy --strict src

pytest: $(STAMP) js/node_modules chromium
	$(BIN)/pytest $(PYTEST_ARGS)

# The browser tests drive Debian's Chromium (never a browser download of Playwright's own). Installed
# when missing and possible (root); without it the browser tests skip, or fail in CI.
CHROMIUM ?= /usr/bin/chromium
.PHONY: chromium
chromium:
	@test -x $(CHROMIUM) || (command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
		(apt-get install -y --no-install-recommends chromium || \
		 (apt-get update && apt-get install -y --no-install-recommends chromium))) || \
		echo "make: no $(CHROMIUM) and cannot install it: the browser tests will skip"

# The npm packages the tests and benchmarks run against (reference implementations, peers).
js/node_modules: js/package.json js/package-lock.json
	npm ci --prefix js --no-audit --no-fund
	touch js/node_modules

bench: $(STAMP)
	$(BIN)/mailslot bench runtime

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
	rm -f src/mailslot/migrate/_locktrack*.so src/mailslot/runtime/_speedups*.so
