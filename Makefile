# The README's two commands: `make demo` (install + run the main job) and `make test` (install + lint + tests).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
UV ?= $(PYTHON) -m uv

.PHONY: setup demo test lint clean

setup:
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv \
		|| $(PYTHON) -m pip install --quiet --user --break-system-packages uv
	$(UV) sync --frozen --quiet
	@# Statement audit (Decree 13/2023): pgaudit for the PostgreSQL the warehouse runs, where apt can; never fatal.
	@$(UV) run --frozen python -m kho.warehouse.audit install || echo 'pgaudit: not installed; audit falls back to statement logging'
	@# Backups and WAL archiving (pgBackRest, Debian's package), where apt can; never fatal (backups then say why).
	@$(UV) run --frozen python -m kho.warehouse.backup install || echo 'pgbackrest: not installed; no backups'

demo: setup
	$(UV) run --frozen kho demo

lint: setup
	$(UV) run --frozen ruff check plugins dags tests
	$(UV) run --frozen mypy plugins/kho
	@# Every file derived from kho.sources (GX suites, dbt sources and staging, seeds, docs) is what it gives.
	$(UV) run --frozen kho generate --check
	@# Every import declared, every runtime dependency used (pyproject's [tool.deptry] says what is ignored and why).
	$(UV) run --frozen deptry plugins dags
	$(UV) run --frozen deptry bench tests --ignore DEP002,DEP004

# A skip fails the run (tests/conftest.py), unless this machine cannot have what the test needs; those are listed
# at the end as not tested. `KHO_TEST_NO_SKIP=0 make test` lets skips pass.
test: lint
	@# The browser tests drive Debian's Chromium with Playwright (its own browser builds cannot be downloaded).
	@$(UV) run --frozen python -m tests.support.browser install
	@KHO_TEST_NO_SKIP=$${KHO_TEST_NO_SKIP:-1} $(UV) run --frozen pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo 'make test: pytest ran no tests' >&2; exit 1; fi; exit $$rc

clean:
	-$(UV) run --frozen kho warehouse destroy
