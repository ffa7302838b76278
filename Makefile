# Set-up and everyday commands. Each target creates .venv itself when it is missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
LOCK_VENV ?= /tmp/faceswap-pl-lock

.PHONY: venv zoo test test-slow demo clean-venv lock

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,insightface]'
	# insightface asks for opencv-python, whose cv2/ would overwrite the headless build's: without its deps
	$(PY) -m pip install -q -c constraints.txt --no-deps insightface
	$(PY) -c "import cv2; cv2.FaceDetectorYN; print('cv2', cv2.__version__, 'ok')"
	touch $(STAMP)

# constraints.txt from a fresh resolution of pyproject.toml (run the tests before committing it)
lock:
	rm -rf $(LOCK_VENV) && $(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install -q --upgrade pip
	$(LOCK_VENV)/bin/python -m pip install -q '.[dev,insightface]'
	$(LOCK_VENV)/bin/python -m pip install -q --no-deps insightface
	{ echo "# The versions CI installs (pip install -c constraints.txt ...): refresh with \`make lock\` and run the tests."; \
	  $(LOCK_VENV)/bin/python -m pip freeze --exclude faceswap-pl --exclude-editable; } > constraints.txt
	rm -rf $(LOCK_VENV)

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
