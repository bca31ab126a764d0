# One command to set up and build the book, one to run every test.
#   make book   # venv + pinned install + offline MathJax, then a clean, executed, warning-free build
#   make test   # ruff + mypy + unit tests + every notebook (pytest --nbval-lax)
#   make results  # rerun the full experiments behind the committed results/ files (long)
VENV   ?= .venv
# Where CPU torch comes from. Empty: PyPI/the local wheel (this machine has the CPU build on disk).
# On a machine whose default torch wheel is a CUDA build, set it explicitly, e.g.
#   make book TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=
PYTHON ?= python3
BIN    := $(VENV)/bin

.PHONY: setup browser book check-html measure test unit notebooks lint clean results

setup: $(VENV)/.installed _mathjax/mathjax/VERSION browser

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/pip install -q -r requirements.txt
	touch $@

_mathjax/mathjax/VERSION: tools/get_mathjax.sh
	bash tools/get_mathjax.sh

# The headless browser of tools/build_pdf.py and tools/check_html.py: $(CHROMIUM), a path or a command
# on PATH, Chromium or Google Chrome (the GitHub workflows pass the hosted image's Chrome). Left at its
# default, Debian's chromium is installed when we are root (containers); elsewhere install a browser
# or set CHROMIUM. Without one the check fails, unless SKIP_BROWSER=1.
# `make test` needs neither npm nor a browser.
CHROMIUM ?= chromium
export CHROMIUM
browser:
	@command -v "$(CHROMIUM)" >/dev/null 2>&1 || { \
	  if [ "$(CHROMIUM)" = chromium ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "note: no browser '$(CHROMIUM)': set CHROMIUM to a Chromium or Google Chrome binary, or SKIP_BROWSER=1 to skip the browser checks of the built book"; fi; }

book: setup
	rm -rf _build
	COMPANION_PROGRESS=final TQDM_MININTERVAL=10 $(BIN)/jupyter-book build . -W -n --keep-going
	$(BIN)/python tools/build_pdf.py _build/html
	$(BIN)/python tools/check_html.py _build/html

check-html:
	$(BIN)/python tools/check_html.py _build/html

# How each chapter reads in the built book (screens, visible code lines, check paragraphs,
# equations at 390 px): the goal table of DESIGN.md
measure:
	$(BIN)/python tools/measure_pages.py _build/html

test: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q --nbval-lax --nbval-current-env tests notebooks

unit: $(VENV)/.installed
	$(BIN)/python -m pytest -q tests

notebooks: $(VENV)/.installed
	$(BIN)/python -m pytest -q --nbval-lax --nbval-current-env notebooks

lint: $(VENV)/.installed
	$(BIN)/ruff check .

# Regenerate every committed result file of the full runs (results/<chapter>/<name>.json); the
# k-diffusion comparison makes its own scratch environment (tools/kdiffusion_env.sh).
results: $(VENV)/.installed
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python -m companion.experiments all

clean:
	rm -rf _build .pytest_cache
