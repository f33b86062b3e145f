# gefyra: every developer task is a target here. `make demo` and `make test` work on a fresh machine.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test test-unit lint cluster cluster-down images podman venv bench bench-scale soak

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml tests/plugins/recording_interceptor/pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	# The sample third-party plugin: the tests find it through the `gefyra` entry points, as a
	# user's plugins are found (tests/plugins/recording_interceptor).
	$(VENV)/bin/pip install -q --no-deps --no-build-isolation -e tests/plugins/recording_interceptor
	touch $@

## The development cluster (hack/devcluster/): a real single-node Kubernetes on this machine.
cluster:
	hack/devcluster/up.sh

cluster-down:
	hack/devcluster/down.sh

## Without REGISTRY: into the development cluster's registry (the cluster comes up first). With
## REGISTRY=HOST[:PORT][/PATH]: gefyra's images pushed there, for `gefyra up --registry ...`.
images:
	@if [ -z "$(REGISTRY)" ]; then $(MAKE) --no-print-directory cluster; fi
	REGISTRY="$(REGISTRY)" hack/devcluster/images.sh

podman:
	hack/devcluster/podman.sh

## Benchmarks (bench/): figures against baselines of the same run -> bench/results.json, RESULTS.md, results.png
bench: venv images
	$(PY) bench/run.py

## At scale (bench/scale.py, about 15 minutes; kwok is built once, about 3 minutes): the operator's
## memory and CPU, a bridge's time to Ready and the API requests at rest, with 0, 100 and 5,000 fake
## pods (kwok) -> bench/scale.json.
bench-scale: venv images
	$(PY) bench/scale.py

## The soak (bench/soak.py, about 12 minutes): a bridge under steady load for 10 minutes, stowaway's
## pod deleted in the middle -> bench/soak.json (recovery window, latency, memory).
soak: venv images
	$(PY) bench/soak.py

## Static checks: ruff over the code, tests and benchmarks; mypy --strict over the package.
lint: venv
	$(VENV)/bin/ruff check gefyra tests bench
	$(VENV)/bin/mypy --strict gefyra

## The whole suite against the development cluster; brings it up (and down again) if needed.
test: venv lint
	hack/test.sh

test-unit: venv
	$(PY) -m pytest tests/unit

## The end-to-end tour: cluster, sample service, gefyra, a request answered locally, clean-up.
demo: venv
	hack/demo.sh
