# One command to set up and build the book, one to run every test.
#   make book   # venv + pinned install + offline MathJax, then a clean, executed, warning-free build
#   make test   # ruff + unit tests + every notebook (pytest --nbval-lax)
VENV   ?= .venv
PYTHON ?= python3
BIN    := $(VENV)/bin

.PHONY: setup book test unit notebooks lint clean

setup: $(VENV)/.installed _mathjax/mathjax/tex-mml-chtml.js

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.txt
	touch $@

_mathjax/mathjax/tex-mml-chtml.js: tools/get_mathjax.sh
	bash tools/get_mathjax.sh

book: setup
	rm -rf _build
	TQDM_MININTERVAL=10 $(BIN)/jupyter-book build . -W -n --keep-going

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q --nbval-lax --nbval-current-env tests notebooks

unit: setup
	$(BIN)/python -m pytest -q tests

notebooks: setup
	$(BIN)/python -m pytest -q --nbval-lax --nbval-current-env notebooks

lint: setup
	$(BIN)/ruff check .

clean:
	rm -rf _build .pytest_cache
