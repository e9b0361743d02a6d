# Two entry points for a fresh machine: `make demo` (the main job) and `make test`.
# Both create .venv and install what they need; torch==2.13.0 goes in first so that
# pip never pulls a CUDA build of torch.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: setup demo example-roundtrip test lint docs clean

$(STAMP): pyproject.toml plugins/invblocks-camera/pyproject.toml plugins/invblocks-compress/pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[dev,data,docs]"
	$(BIN)/python -m pip install --quiet -e plugins/invblocks-camera
	$(BIN)/python -m pip install --quiet -e plugins/invblocks-compress
	# real stereo pairs (CC BY 4.0): the files only, none of the package's requirements
	$(BIN)/python -m pip install --quiet --no-deps stereodemo==0.7
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/python examples/demo.py --out outputs/demo

example-roundtrip: setup
	$(BIN)/python examples/roundtrip.py --out outputs/roundtrip

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check invblocks tasks tests plugins
	$(BIN)/mypy
	$(BIN)/lint-imports

test: setup lint
	@$(BIN)/python -m pytest -q -n auto invblocks tests plugins; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests"; fi; exit $$rc

docs: setup
	rm -rf docs/_build docs/_autosummary
	$(BIN)/sphinx-build -W --keep-going -n -q -b html docs docs/_build/html
	@echo "documentation in docs/_build/html/index.html"

clean:
	rm -rf $(VENV) outputs .hypothesis
