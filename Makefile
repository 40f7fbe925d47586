# proscale: one-command set-up, tests and demo.
#   make install [WHEELHOUSE=DIR]   create .venv and install the pinned stack
#                                   (PROSCALE_WITH_OPS=0: without the C++ ops)
#   make test                       run the test suite (installs first if needed)
#   make demo                       run the end-to-end demo (installs first if needed)
#   make lint                       flake8 with setup.cfg's settings
PYTHON ?= python3.11
VENV ?= .venv
WHEELHOUSE ?=
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.proscale-installed
FIND_LINKS := $(if $(WHEELHOUSE),--find-links $(abspath $(WHEELHOUSE)))
PYTEST_ARGS ?=

.PHONY: install test test-heavy demo lint clean-venv

install: $(STAMP)

OPS_SOURCES := setup.py $(wildcard projects/proscale/ops/csrc/*.cpp projects/proscale/ops/csrc/*/*.cpp)

$(STAMP): pyproject.toml $(OPS_SOURCES) requirements.txt requirements/build.txt requirements/mmcv.txt requirements/runtime.txt requirements/tests.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade "pip<26"
	$(PIP) install -r requirements/build.txt
	MMCV_WITH_OPS=1 FORCE_CUDA=0 $(PIP) install --no-build-isolation $(FIND_LINKS) -r requirements/mmcv.txt
	$(PIP) install $(FIND_LINKS) -r requirements/runtime.txt -r requirements/tests.txt
	$(PIP) install --no-build-isolation -e .
	$(PY) -c "import proscale, mmcv.ops, mmdet, mmseg, panopticapi, cityscapesscripts, torch; assert not torch.version.cuda, 'a CUDA torch was installed'"
	touch $(STAMP)

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

test-heavy: install
	$(PY) -m pytest -m heavy $(PYTEST_ARGS)

demo: install
	$(PY) tools/demo.py $(if $(DEMO_FRESH),--fresh)

lint: install
	$(PY) -m flake8 projects tools tests configs

clean-venv:
	rm -rf $(VENV)
