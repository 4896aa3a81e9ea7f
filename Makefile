# The two commands: `make run` starts the service, `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test install lint secrets-baseline docs audit bench chaos fuzz clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The documentation site's scripts from the npm registry (package-lock.json), where npm is
# installed; without it the site builds with its diagrams as text.
NODE_STAMP := node_modules/.installed
NODE_DEPS := $(if $(shell command -v npm),$(NODE_STAMP))

$(NODE_STAMP): package.json package-lock.json
	npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

install: $(STAMP) $(NODE_DEPS)

run: $(STAMP)
	./scripts/run.sh

test: $(STAMP) $(NODE_DEPS)
	SECRET_KEY=$${SECRET_KEY:-test-only-secret} $(BIN)/python -m pytest $(PYTEST_ARGS)

# make bench [SCENARIO=ingest,e2e,...] [N=size]: prints a table, writes var/bench/latest.json
bench: $(STAMP)
	$(BIN)/python -m bench.run $(if $(SCENARIO),--scenario $(SCENARIO)) $(if $(N),--n $(N))

# make chaos [SCENARIO=kill,redis,...] [N=size] [BROKER=amqp]: lost/duplicated counts per fault
chaos: $(STAMP)
	$(BIN)/python -m bench.chaos $(if $(SCENARIO),--scenario $(SCENARIO)) $(if $(N),--n $(N)) \
		$(if $(BROKER),--broker $(BROKER))

# make fuzz [FUZZ_EXAMPLES=n]: schemathesis over every API operation, n examples each (the
# normal suite runs 5); fails on a 5xx or an answer the OpenAPI schema does not describe.
fuzz: $(STAMP)
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-200} SECRET_KEY=$${SECRET_KEY:-test-only-secret} \
		$(BIN)/python -m pytest tests/test_api_fuzz.py -q -p no:cacheprovider

# ruff (style and bugs), mypy (types, with the Django and DRF plugins), lint-imports (the
# app layers declared in pyproject.toml: lower layers never import higher ones, no circles),
# openapi-spec-validator (the OpenAPI schema the API serves is a valid OpenAPI document),
# detect-secrets (no secret in a tracked file but the test values in .secrets.baseline).
lint: $(STAMP)
	$(BIN)/ruff check .
	SECRET_KEY=$${SECRET_KEY:-lint-only-secret} $(BIN)/mypy
	$(BIN)/lint-imports
	SECRET_KEY=$${SECRET_KEY:-lint-only-secret} $(BIN)/python manage.py spectacular --format openapi-json --fail-on-warn | $(BIN)/openapi-spec-validator -
	$(BIN)/python scripts/check_secrets.py

# After adding a test value that looks like a secret on purpose: list it in the baseline
# (keeps the audit marks of the ones already there), then commit .secrets.baseline.
secrets-baseline: $(STAMP)
	$(BIN)/detect-secrets scan --baseline .secrets.baseline

# The documentation site (mkdocs.yml) from docs/ into var/site, offline and strict: a broken
# link, a missing page or a schema warning fails. The API reference is generated from
# `manage.py spectacular` during the build (scripts/docs_hooks.py).
docs: $(STAMP) $(NODE_DEPS)
	NO_MKDOCS_2_WARNING=1 SECRET_KEY=$${SECRET_KEY:-docs-only-secret} $(BIN)/mkdocs build --strict --quiet

# Installed packages against PyPI's vulnerability database (pip-audit): fails on a known
# vulnerability with a fixed release, and (exit 2) when it could not look at all.
# AUDIT_ARGS=--allow-unavailable reports "not performed" loudly instead of failing.
audit: $(STAMP)
	$(BIN)/python scripts/audit_deps.py $(AUDIT_ARGS)

clean:
	rm -rf var .pytest_cache node_modules
