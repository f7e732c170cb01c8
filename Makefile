# Two commands do all the set-up:  `make book`  and  `make test`.
# Both create .venv (Python 3.11) on first use and install the pinned requirements and hbm_lib.

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CACHE  := _build/.jupyter_cache
# The execution cache keys on a page's code only; hash the library and the pins too,
# so that a change to hbm_lib/ or requirements.txt re-executes every chapter.
LIB_HASH = $(shell cat requirements.txt $$(find hbm_lib -name '*.py' -o -name '*.csv' | LC_ALL=C sort) | sha256sum | cut -c1-16)

# MathJax is served from the build (no CDN), so formulas render offline. It comes from a pinned
# PyPI package (django-static-mathjax, MathJax 3.2.2, no dependencies) installed with the requirements.
MATHJAX := _build/static/mathjax

.PHONY: book test check-site venv clean clean-cache bench

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
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
	$(BIN)/jupyter-book build . --builder html -W -n --keep-going

test: $(STAMP)
	MPLBACKEND=agg $(BIN)/python -m pytest

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
