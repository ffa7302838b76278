# Set-up and everyday commands. Each target creates .venv itself when it is missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: venv zoo test test-slow demo clean-venv

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	# insightface asks for opencv-python, albumentations for opencv-python-headless; both own cv2/.
	# Keep exactly one: the headless build, reinstalled so its files are whole.
	$(PY) -m pip uninstall -q -y opencv-python
	$(PY) -m pip install -q --force-reinstall --no-deps \
	    "opencv-python-headless==$$($(PY) -c 'import importlib.metadata as m; print(m.version("opencv-python-headless"))')"
	$(PY) -c "import cv2; cv2.FaceDetectorYN; print('cv2', cv2.__version__, 'ok')"
	touch $(STAMP)

venv: $(STAMP)

zoo: $(STAMP)
	$(VENV)/bin/faceswap-pl models fetch --all

test: zoo
	$(PY) -m pytest $(PYTEST_ARGS)

test-slow: zoo
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

clean-venv:
	rm -rf $(VENV)

demo: zoo
	$(VENV)/bin/faceswap-pl demo
