# TwinVision: `make test` and `make report` create the environment first if it is missing.
# VENV can point outside the clone (CI does) so that one environment is reused.

VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
CONSTRAINTS := requirements/constraints.txt
STAMP := $(VENV)/.twinvision-installed
PYTEST_ARGS ?=
REPORT_ARGS ?=
OUT ?= reports/latest

.PHONY: venv browser test test-all report clean-venv

venv: $(STAMP)

# The two pip steps in the verified order (DEPENDENCIES: torch and torchvision first, then the
# TensorFlow stack), every version pinned by the constraints file, then this package itself.
$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --disable-pip-version-check -c $(CONSTRAINTS) torch==2.14.1 torchvision==0.29.1 \
	    torchaudio==2.11.1 flashlight-text==0.0.7
	$(PIP) install --quiet --disable-pip-version-check -c $(CONSTRAINTS) \
	    tensorflow==2.21.0 keras==3.15.1 tf-keras==2.21.0 keras-cv==0.9.0 \
	    tensorflow-model-optimization==0.8.1 tf2onnx==1.17.0 onnx==1.23.2 onnxruntime==1.32.0 \
	    onnxscript==0.7.2 ai-edge-litert==2.3.0 torchao==0.18.0 protobuf==7.36.2 numpy==2.4.6 pytest==9.2.0 \
	    jsonschema==4.26.0 jiwer==4.0.0
	$(PIP) install --quiet --disable-pip-version-check -c $(CONSTRAINTS) -e .
	$(PIP) check
	touch $(STAMP)

# Headless Chromium for the report's browser test (Debian package; needs root, skipped otherwise).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium missing and not root: the browser test will be skipped"; fi; }

test: venv browser
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

test-all: venv browser
	$(PY) -m pytest $(PYTEST_ARGS)

report: venv
	$(VENV)/bin/twinvision report --out $(OUT) $(REPORT_ARGS)

clean-venv:
	rm -rf $(VENV)
