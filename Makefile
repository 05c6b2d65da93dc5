# Two commands: `make run` (the main job) and `make test`. Both create .venv on first use.
# `make test` sends each test file to one of two workers (--dist loadfile): its module fixtures are built once
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# torch pinned only here, for these machines (pip serves these from local disk); pyproject keeps loose ranges
TORCH  := torch==2.14.1 torchvision==0.29.1

.PHONY: run test bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[test]'
	touch $@

# the course study on the bundled digits, offline: a CNN from scratch, transfer learning, transfer with early
# stopping; prints where its comparison (comparison.html, comparison.md) is
run: $(VENV)/.installed
	$(VENV)/bin/imagefit study seed

test: $(VENV)/.installed
	$(PY) -m pytest -n 2 --dist loadfile -q

clean:
	rm -rf $(VENV) runs .pytest_cache
