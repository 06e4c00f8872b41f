# dbrepro: a reproduction book of Range Loss (ICCV 2017) and Domain Balancing (CVPR 2020).
#
#   make book    install, execute every notebook (PROFILE=cpu), build the site, print where it is
#   make test    install, unit tests, every notebook in the smoke profile, the site (warnings are
#                errors) and its offline render check in headless Chromium
#
# Needs Python 3.11 and pip; npm (MathJax is vendored from the npm registry, no CDN at view time);
# Chromium for the render check (`make browser` installs the Debian package when run as root).

PYTHON  ?= python3.11
VENV    ?= .venv
PROFILE ?= cpu
BUILD   ?= _build
# pytest-xdist workers for the unit tests: one per core, at most 4 (make test TEST_JOBS=1: one process)
TEST_JOBS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); [ $$n -gt 4 ] && n=4; echo $$n)

MATHJAX_VERSION := 3.2.2
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.dbrepro-installed
MATHJAX := $(BUILD)/vendor/node_modules/mathjax/es5
BOOK    := $(PY) -m dbrepro.book

# The LFW chapter reads LFW from DBREPRO_LFW; a development copy sits beside the repository when present.
ifneq ($(wildcard ../shared/data/lfw),)
export DBREPRO_LFW ?= $(abspath ../shared/data)
endif

# PyTorch's OpenMP threads wait passively: a 2-thread job then stays fast when the other core is busy
# (see dbrepro.CPU_THREAD_ENV and benchmarks/bench_threads.py)
export OMP_WAIT_POLICY ?= PASSIVE

.DEFAULT_GOAL := help
# one heavy process at a time, in the order written
.NOTPARALLEL:
.PHONY: help setup book test browser mathjax clean lab rehearsal

help:
	@echo "make book     install, execute every notebook in PROFILE=$(PROFILE), build the site"
	@echo "make test     install, unit tests, notebooks in the smoke profile, site with warnings as errors,"
	@echo "              offline render check in headless Chromium"
	@echo "make setup    create $(VENV) with $(PYTHON) and install the pinned dependencies (once)"
	@echo "make mathjax  vendor MathJax $(MATHJAX_VERSION) from the npm registry into $(BUILD)/vendor"
	@echo "make browser  install Chromium (Debian package, as root) or say how"
	@echo "make lab      install JupyterLab (the lab extra) and open the chapters, paired .md <-> .ipynb"
	@echo "make rehearsal  the paper-scale path on a tiny InsightFace folder written from the synthetic world"
	@echo "make clean    remove $(BUILD) (the virtualenv and the run cache stay)"
	@echo "variables: PROFILE=smoke|cpu|paper  VENV=$(VENV)  PYTHON=$(PYTHON)  BUILD=$(BUILD)"

setup: $(STAMP)

# Reinstalls only when the pins change. pip compiles the packages' bytecode on one core; compileall -j 0 does it
# on every core (on 2 cores, 2026-12-03: install 116 s + compile 35 s against 178 s for pip's own compile). A
# few files that no Python 3.11 can compile (torch's tests of 3.12 syntax) fail there as they do inside pip.
$(STAMP): pyproject.toml constraints.txt
	@start=$$(date +%s); \
	if [ ! -x "$(PY)" ]; then \
		command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (set PYTHON=...)"; exit 1; }; \
		$(PYTHON) -m venv $(VENV); \
	fi; \
	$(PY) -m pip install --disable-pip-version-check -q --no-compile -c constraints.txt -e ".[dev]" && \
	{ $(PY) -m compileall -q -j 0 "$$($(PY) -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" >/dev/null || true; } && \
	touch $@ && \
	echo "installed into $(VENV) in $$(( $$(date +%s) - start )) s ($$(du -sh $(VENV) | cut -f1))"

mathjax: $(MATHJAX)/tex-chtml.js

$(MATHJAX)/tex-chtml.js:
	@command -v npm >/dev/null || { echo "error: npm is needed to vendor MathJax (Debian: apt-get install npm)"; exit 1; }
	npm install --prefix $(BUILD)/vendor --no-audit --no-fund --loglevel=error mathjax@$(MATHJAX_VERSION)
	@test -f $@ && touch $@

browser:
	@if command -v chromium >/dev/null 2>&1; then \
		echo "chromium: $$(command -v chromium)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing chromium with apt-get"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "Chromium is needed for the offline render check; install it with"; \
		echo "  sudo apt-get install chromium     (Debian; chromium-browser on Ubuntu)"; \
		echo "or point CHROMIUM=/path/to/chrome at any Chromium or Chrome."; \
	fi

book: setup mathjax
	$(BOOK) run --profile $(PROFILE) --build-dir $(BUILD)
	$(BOOK) build --profile $(PROFILE) --build-dir $(BUILD) --mathjax $(MATHJAX)

test: setup mathjax browser
	$(PY) -m pytest -q -n $(TEST_JOBS) -m "not notebooks and not slow"
	DBREPRO_MATHJAX=$(abspath $(MATHJAX)) $(PY) -m pytest -q -m notebooks

# JupyterLab on the chapters: jupytext.toml pairs each notebooks/*.md with a git-ignored .ipynb that keeps
# outputs (jupytext syncs the two on save; the .md stays the source of truth).
LAB_STAMP := $(VENV)/.dbrepro-lab-installed
$(LAB_STAMP): $(STAMP)
	$(PY) -m pip install --disable-pip-version-check -q -c constraints.txt -e ".[dev,lab]" && touch $@

lab: $(LAB_STAMP)
	$(VENV)/bin/jupyter lab notebooks/

# The paper profile's code path on a tiny InsightFace folder (`dbrepro rehearsal`): what a GPU owner runs first.
REHEARSAL_DATA ?= $(BUILD)/rehearsal-data
rehearsal: setup mathjax
	$(PY) -m dbrepro rehearsal $(REHEARSAL_DATA)
	DBREPRO_CASIA=$(abspath $(REHEARSAL_DATA)) DBREPRO_MS1MV2=$(abspath $(REHEARSAL_DATA)) \
		$(BOOK) run --profile rehearsal --build-dir $(BUILD)
	$(BOOK) build --profile rehearsal --build-dir $(BUILD) --mathjax $(MATHJAX)

clean:
	rm -rf $(BUILD) .pytest_cache
