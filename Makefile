# Two entry points, both from a fresh machine: `make demo` and `make test`.
# Everything they need is installed here: a virtualenv from PyPI (pinned by constraints.txt)
# and, for the tests, Debian's prometheus and prometheus-alertmanager (promtool, amtool),
# poppler-utils (the reports' PDFs read and rendered), postgresql (the tests start their
# own server in a temporary folder with its initdb and pg_ctl) and nginx (the benchmark's
# plain proxy, started by its test in a temporary folder too).
# `make bench` runs the benchmark of docs/performance.md, with Debian's wrk and nginx;
# `make soak` the gateway's memory over 400,000 requests (about seven minutes).

VENV ?= .venv
PYTHON ?= python3
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEBIAN_TOOLS := prometheus promtool prometheus-alertmanager amtool pdftotext pdfinfo pdftoppm

.PHONY: demo test bench soak debian-tools
.DELETE_ON_ERROR:

demo: $(VENV)/installed
	$(VENV)/bin/llm-usage-exporter demo $(DEMO_ARGS)

# Lint and types first: seconds, where the suite takes minutes (pyproject.toml: [tool.ruff],
# [tool.mypy]).
test: $(VENV)/installed-test debian-tools
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

# nginx is looked for in /usr/sbin too, which is not on a user's PATH.
bench: $(VENV)/installed
	@{ command -v wrk && { command -v nginx || [ -x /usr/sbin/nginx ]; }; } >/dev/null || { \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends \
	    wrk nginx >/dev/null; }
	$(VENV)/bin/llm-usage-exporter bench $(BENCH_ARGS)

soak: $(VENV)/installed
	$(VENV)/bin/python -m exporter.devtools.soak $(SOAK_ARGS)

$(VENV)/installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -c constraints.txt -e .
	touch $@

$(VENV)/installed-test: $(VENV)/installed
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
	touch $@

debian-tools:
	@for tool in $(DEBIAN_TOOLS); do command -v $$tool >/dev/null || missing=1; done; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing=1; \
	command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing=1; \
	if [ -n "$$missing" ]; then \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends \
	    prometheus prometheus-alertmanager poppler-utils postgresql nginx >/dev/null; \
	fi
