# WiFi Kota. The two commands: `make demo` and `make test` (see README.md).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DEMO_DATA := $(CURDIR)/var/demo

.PHONY: demo demo-rules test bench venv system-deps clean translations

## Build the environment, then show the system with its embedded defaults (SQLite). As root:
## the whole city in network namespaces (scripts/demo_city.py); otherwise the session rules
## with the in-memory firewall, then the dashboard on demo data.
demo: venv
	@if [ "$$(id -u)" -eq 0 ]; then \
	  scripts/install-system-deps && $(BIN)/python scripts/demo_city.py; \
	else \
	  echo "not root: residents as HTTP clients of the portal on the in-memory firewall, then the dashboard"; \
	  echo "(run it as root for the whole city in network namespaces)"; \
	  $(MAKE) --no-print-directory demo-rules; \
	fi

demo-rules: venv
	@mkdir -p $(DEMO_DATA)
	@test -s $(DEMO_DATA)/device-hash.key || (umask 077; head -c 32 /dev/urandom | base64 > $(DEMO_DATA)/device-hash.key)
	@rm -f $(DEMO_DATA)/wifikota.db $(DEMO_DATA)/wifikota.db-wal $(DEMO_DATA)/wifikota.db-shm
	@export WIFIKOTA_DATA=$(DEMO_DATA) WIFIKOTA_DEVICE_HASH_SECRET="$$(cat $(DEMO_DATA)/device-hash.key)"; \
	set -e; \
	echo "== wifikota config check sites.yaml"; $(BIN)/wifikota config check sites.yaml; \
	echo "== wifikota db upgrade"; $(BIN)/wifikota db upgrade; \
	echo "== a simulated morning at the hotspots (the portal over HTTP, in-memory firewall)"; \
	$(BIN)/python -m controller.demo.morning --config sites.yaml; \
	echo "== wifikota sites"; $(BIN)/wifikota sites; \
	echo "== wifikota sessions --limit 10"; $(BIN)/wifikota sessions --limit 10; \
	echo "== wifikota voucher list"; $(BIN)/wifikota voucher list; \
	echo "== wifikota audit"; $(BIN)/wifikota audit; \
	echo; echo "Try it yourself:  export WIFIKOTA_DATA=$(DEMO_DATA) WIFIKOTA_DEVICE_HASH_SECRET=\$$(cat $(DEMO_DATA)/device-hash.key); $(BIN)/wifikota --help"; \
	echo; echo "== Diskominfo's dashboard, on two months of demo data"; \
	$(BIN)/python -m controller.demo.dashboard --config sites.yaml --days 60

## Install what is missing (as root: Debian packages, PostgreSQL), then lint, type-check and
## run the whole suite: against SQLite and PostgreSQL, and (as root) the kernel tests in
## network namespaces.
test: system-deps venv
	@scripts/fetch-axe || echo "axe-core not fetched: the accessibility test will be skipped"
	$(BIN)/ruff check controller captive radius tests
	$(BIN)/ruff format --check controller captive radius tests
	$(BIN)/mypy
	@url="$${WIFIKOTA_TEST_POSTGRES:-$$(scripts/ensure-postgres)}"; \
	netns=$$([ "$$(id -u)" -eq 0 ] && echo 1 || echo 0); \
	WIFIKOTA_TEST_POSTGRES="$$url" WIFIKOTA_REQUIRE_POSTGRES=1 WIFIKOTA_REQUIRE_NETNS=$$netns \
	$(BIN)/pytest

system-deps:
	@scripts/install-system-deps

venv: $(BIN)/.installed

$(BIN)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "WiFi Kota needs Python 3.11 or newer (PYTHON=$(PYTHON))")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $@

clean:
	rm -rf $(VENV) var *.egg-info .pytest_cache .mypy_cache .ruff_cache

## Benchmarks (root): enforcement latency and forwarding, the ruleset lost and restored,
## then the portal, each against its reference in the same run. The figures are printed as
## Markdown (docs/benchmarks.md).
bench: system-deps venv
	@scripts/install-bench-deps
	$(BIN)/python bench/enforcement.py
	$(BIN)/python bench/failclosed.py
	$(BIN)/python bench/restart.py
	$(BIN)/python bench/portal.py
	$(BIN)/python bench/front.py
	$(BIN)/python bench/radius.py --postgres
	$(BIN)/python bench/scale.py --postgres --gateways 2
	$(BIN)/python bench/conntrack.py
	$(BIN)/python bench/config.py
	$(BIN)/python bench/health.py

# After changing a text in captive/: extract, merge into the .po files, compile the .mo files.
translations: venv
	$(BIN)/pybabel extract -F captive/babel.cfg -k lazy_gettext -o captive/translations/messages.pot \
		--no-location --omit-header .
	$(BIN)/pybabel update -i captive/translations/messages.pot -d captive/translations
	$(BIN)/pybabel compile -d captive/translations
