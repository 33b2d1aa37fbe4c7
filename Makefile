# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Real peers the tests run against, each one word: a Debian package and the command it
# installs (make test installs the missing ones).
TEST_TOOLS := redis-server
SUDO = $(shell [ "$$(id -u)" = 0 ] || command -v sudo)

.PHONY: demo test deps-test lint bench bench-tls clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,bench]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/apiward demo

test: $(STAMP) deps-test
	$(BIN)/ruff check src tests bench
	$(BIN)/python -m pytest -q

deps-test:
	@missing=""; for tool in $(TEST_TOOLS); do \
	  command -v $$tool >/dev/null || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing from Debian's packages"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing || \
	  ($(SUDO) apt-get update -q && \
	   $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing); \
	fi

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

bench: $(STAMP)
	$(BIN)/python bench/proxy.py

bench-tls: $(STAMP)
	$(BIN)/python bench/tls.py

.PHONY: bench-floods
bench-floods: $(STAMP)
	$(BIN)/python bench/floods.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info
