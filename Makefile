# Two commands do all the set-up:  `make book`  and  `make test`.
# Both create .venv on first use (Python 3.13, or 3.12) and install the pinned requirements and hbm_lib.

# The interpreter for .venv: PYTHON if given (make book PYTHON=/path/to/python3.13); otherwise the
# first of python3.13 and python3.12 on PATH that runs, then pyenv's newest 3.13 or 3.12 (pyenv's
# shims only answer when PYENV_VERSION is set, so its interpreters are called by path).
PYENV_VERSIONS := $(or $(PYENV_ROOT),$(HOME)/.pyenv)/versions
ifeq ($(origin PYTHON),undefined)
PYTHON := $(shell for p in python3.13 python3.12; do \
	  $$p -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1 && { command -v $$p; exit 0; }; done; \
	  for d in $$(ls -d $(PYENV_VERSIONS)/3.13.* $(PYENV_VERSIONS)/3.12.* 2>/dev/null | sort -rV); do \
	  test -x $$d/bin/python && { echo $$d/bin/python; exit 0; }; done)
endif
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CACHE  := _build/.jupyter_cache
# The execution cache keys on a page's code only; hash the library, the pins and the kernels'
# startup file too, so that a change to any of them re-executes every chapter.
LIB_HASH = $(shell cat requirements.txt chapters/_ext/kernel_startup.py $$(find hbm_lib -name '*.py' -o -name '*.csv' | LC_ALL=C sort) | sha256sum | cut -c1-16)

# MathJax is served from the build (no CDN), so formulas render offline. It comes from a pinned
# PyPI package (django-static-mathjax, MathJax 3.2.2, no dependencies) installed with the requirements.
MATHJAX := _build/static/mathjax

.PHONY: book test test-wheel check-site venv clean clean-cache bench

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || test -n "$(PYTHON)" || { echo "make: this book needs Python 3.12 or 3.13 (PyMC 6 requires >= 3.12): install python3.13 or python3.12, or name one with make book PYTHON=/path/to/python3.13" >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

$(MATHJAX)/tex-mml-chtml.js: $(STAMP)
	mkdir -p $(MATHJAX)
	cp -r "$$($(BIN)/python -c 'import mathjax, os; print(os.path.dirname(mathjax.__file__))')/static/mathjax/es5/." $(MATHJAX)/

book: $(STAMP) $(MATHJAX)/tex-mml-chtml.js
	@if [ "$$(cat $(CACHE)/.hbm_lib_hash 2>/dev/null)" != "$(LIB_HASH)" ]; then \
	  echo "hbm_lib or requirements changed: clearing the execution cache and Sphinx's environment"; \
	  rm -rf $(CACHE) _build/.doctrees; mkdir -p $(CACHE); echo "$(LIB_HASH)" > $(CACHE)/.hbm_lib_hash; fi
	@# the chapters run two at a time into the execution cache (one per core); the build then renders
	$(BIN)/python chapters/_ext/execute_chapters.py
	$(BIN)/jupyter-book build . --builder html -W -n --keep-going

test: $(STAMP)
	MPLBACKEND=agg $(BIN)/python -m pytest

# The wheel, installed with only its declared dependencies into a fresh venv on the other supported
# Python (3.12 if .venv runs 3.13, and the reverse); runs the fast tests and doctests against it.
test-wheel: $(STAMP)
	bash .ci/test_wheel

# Opens every page of the built site in headless Chromium (Debian's package, installed here if
# missing) and checks images, formulas, links, search and errors; screenshots in _build/screenshots.
check-site: $(STAMP)
	@test -x /usr/bin/chromium || { echo "installing Debian's chromium"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	$(BIN)/python .ci/check_site.py _build/html

bench: $(STAMP)
	@for f in benchmarks/[!_]*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

clean-cache:
	rm -rf $(CACHE) _build/.doctrees

clean:
	rm -rf _build
