# The two commands of the README: `make demo` (install + run the main job) and `make test` (install + tests).
SHELL := /bin/bash
PYTHON ?= python3.11
UV := $(shell command -v uv 2>/dev/null || echo "$(HOME)/.local/bin/uv")

.PHONY: setup demo test lint clean

$(UV):
	$(PYTHON) -m pip install --quiet --user uv || $(PYTHON) -m pip install --quiet uv

setup: $(UV)
	$(UV) sync --frozen --quiet

demo: setup
	$(UV) run --frozen kho demo

lint: setup
	$(UV) run --frozen ruff check plugins dags tests
	$(UV) run --frozen mypy plugins/kho

test: lint
	@$(UV) run --frozen pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo 'make test: pytest ran no tests' >&2; exit 1; fi; exit $$rc

clean:
	-$(UV) run --frozen kho warehouse destroy
