# Two commands: `make run` (the main job) and `make test`. Both create .venv on first use.
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

run: $(VENV)/.installed
	$(VENV)/bin/imagefit train --dataset digits --model resnet9-small --epochs 15 --scheduler onecycle \
		--optimizer adamw --lr 0.01 --weight-decay 5e-4 --label-smoothing 0.1 --name digits-resnet9-small

test: $(VENV)/.installed
	$(PY) -m pytest -n 2 -q

clean:
	rm -rf $(VENV) runs .pytest_cache
