# signoff: `make run` starts the service, `make test` runs every check, `make bench` prints the
# benchmark table (bench/README.md). All of them set up .venv first, with signoff installed
# editable (code changes apply on the next start).
#
# `make run` (and `make install`) installs only what the service needs; `make test`,
# `make lint`, `make format`, `make bench` and `make dev` add the dev extra (pytest, ruff, mypy,
# playwright, ...) to the same .venv. Each level has its own stamp, so `make test` after
# `make run` adds the dev tools, and `make run` after `make test` installs nothing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CREATED := $(VENV)/pyvenv.cfg
SERVICE := $(VENV)/.installed-service
DEV := $(VENV)/.installed-dev

.PHONY: run test lint format install dev bench screenshots clean

$(CREATED):
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "signoff needs Python 3.11 or newer ($(PYTHON) is older)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(SERVICE): pyproject.toml client/pyproject.toml | $(CREATED)
	$(BIN)/python -m pip install --quiet -e ./client -e .
	touch $(SERVICE)

# The dev extra is a superset of the service's needs, so it satisfies `make run` too.
$(DEV): pyproject.toml client/pyproject.toml | $(CREATED)
	$(BIN)/python -m pip install --quiet -e ./client -e '.[dev]'
	touch $(SERVICE) $(DEV)

install: $(SERVICE)

dev: $(DEV)

run: $(SERVICE)
	$(BIN)/signoff serve

lint: $(DEV)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(DEV)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint
	$(BIN)/pytest

bench: $(DEV)
	$(BIN)/python -m bench

# Every web inbox page at 360x740, 390x844 and 1280x800, as PNGs in docs/screenshots/
# (needs Debian's chromium at /usr/bin/chromium; CI=true makes its absence an error).
screenshots: $(DEV)
	rm -f docs/screenshots/*.png
	CI=true SIGNOFF_SCREENSHOTS=docs/screenshots $(BIN)/pytest -q -p no:cacheprovider \
		tests/web/test_inbox_layout.py -k no_page_scrolls_sideways

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
