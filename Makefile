# Two entry points, both from a fresh machine: `make demo` and `make test`.
# Everything they need is installed here: a virtualenv from PyPI (pinned by constraints.txt)
# and, for the tests, Debian's prometheus and prometheus-alertmanager (promtool, amtool),
# poppler-utils (the reports' PDFs read and rendered) and postgresql (the tests start their
# own server in a temporary folder with its initdb and pg_ctl).
# `make bench` runs the benchmark of README.md's Speed section, with Debian's wrk;
# `make soak` the gateway's memory over 400,000 requests (about seven minutes).

VENV ?= .venv
PYTHON ?= python3
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEBIAN_TOOLS := prometheus promtool prometheus-alertmanager amtool pdftotext pdfinfo pdftoppm

.PHONY: demo test bench soak debian-tools
.DELETE_ON_ERROR:

demo: $(VENV)/installed
	$(VENV)/bin/llm-usage-exporter demo

test: $(VENV)/installed-test debian-tools
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

bench: $(VENV)/installed
	@command -v wrk >/dev/null || { $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends \
	    wrk >/dev/null; }
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
	if [ -n "$$missing" ]; then \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends \
	    prometheus prometheus-alertmanager poppler-utils postgresql >/dev/null; \
	fi
