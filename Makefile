# Herald's Makefile. `make help` lists the targets.
SHELL := bash
.DEFAULT_GOAL := help

GO ?= go
# Every module of the workspace; `go test ./...` at the root matches none.
MODULES := $(shell $(GO) list -m -f '{{.Dir}}')
PKGS := $(addsuffix /...,$(MODULES))
BROKER := deploy/kafka/broker.sh
TESTFLAGS ?= -shuffle=on -count=1 -timeout=20m
ifdef CI
TESTFLAGS += -race
endif
# How long `make fuzz` fuzzes each target.
FUZZTIME ?= 10s
# The test peers from PyPI (Confluent's Python client), in a virtual
# environment that is rebuilt only when their requirements change.
VENV := .cache/venv
PEERS := deploy/peers/requirements.txt

.PHONY: help run build images lint peers test test-unit fuzz kafka-start kafka-stop tidy bench bench-evaluator bench-rules bench-webhook bench-email bench-eventbridge

help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

run: ## Run the devstack: embedded Kafka and registry, every service, a demo tenant.
	$(GO) run ./services/devstack/cmd/devstack

build: ## Build every service's binary into bin/.
	@mkdir -p bin
	@for m in services/*/cmd/*; do echo "build $$m"; $(GO) build -o bin/ ./$$m || exit 1; done

# The images `make images` builds: every service but the devstack, and the
# compose stack's one-shot bootstrap; tagged $(IMAGE_PREFIX)<name>:$(IMAGE_TAG).
IMAGES := $(filter-out devstack,$(patsubst services/%/go.mod,%,$(wildcard services/*/go.mod))) bootstrap
IMAGE_PREFIX ?= herald/
IMAGE_TAG ?= dev

images: ## Build every service's image from deploy/Dockerfile with docker, podman or buildah (CONTAINER_ENGINE to choose).
	@engine="$${CONTAINER_ENGINE:-}"; \
	if [ -z "$$engine" ]; then for e in docker podman buildah; do if command -v $$e >/dev/null; then engine=$$e; break; fi; done; fi; \
	if [ -z "$$engine" ]; then echo "images: no container engine found: install docker, podman or buildah, or set CONTAINER_ENGINE" >&2; exit 1; fi; \
	command -v "$$engine" >/dev/null || { echo "images: CONTAINER_ENGINE=$$engine is not installed" >&2; exit 1; }; \
	for s in $(IMAGES); do \
	  echo "images: $$engine build $(IMAGE_PREFIX)$$s:$(IMAGE_TAG)"; \
	  DOCKER_BUILDKIT=1 $$engine build -f deploy/Dockerfile --build-arg SERVICE=$$s -t $(IMAGE_PREFIX)$$s:$(IMAGE_TAG) . || exit 1; \
	done

lint: ## gofmt and go vet over every module.
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

peers: ## Install the test peers from PyPI into .cache/venv.
	@sum=$$(sha256sum $(PEERS) | cut -d' ' -f1); \
	if [ ! -x $(VENV)/bin/python ] || [ "$$(cat $(VENV)/.requirements.sha256 2>/dev/null)" != "$$sum" ]; then \
	  echo "peers: installing $(PEERS) into $(VENV)"; \
	  rm -rf $(VENV) && python3 -m venv $(VENV) && \
	  $(VENV)/bin/pip install -q --disable-pip-version-check -r $(PEERS) && \
	  echo "$$sum" >$(VENV)/.requirements.sha256; \
	fi

test: lint peers ## Lint, fuzz, then every test of every module, integration tests on a real Kafka broker and the test peers.
	@$(MAKE) --no-print-directory fuzz
	@bash $(BROKER) start
	@trap 'bash $(BROKER) stop >/dev/null 2>&1' EXIT; \
	  HERALD_TEST_KAFKA_BROKERS=$$(bash $(BROKER) brokers) HERALD_TEST_PYTHON=$(CURDIR)/$(VENV)/bin/python \
	  $(GO) test $(TESTFLAGS) $(PKGS)

# Go before 1.27 can fail a fuzz target that found nothing with "context
# deadline exceeded" when -fuzztime ends while a worker is busy
# (go.dev/issue/75804). Fuzzing runs on a toolchain with the fix, which the
# go command fetches from the module proxy once (about 76 MB).
FUZZ_TOOLCHAIN ?= go1.27.3

fuzz: ## Fuzz each Fuzz target for FUZZTIME (10s) on FUZZ_TOOLCHAIN; a failing input is saved to its testdata/fuzz.
	@set -e; export GOTOOLCHAIN=$(FUZZ_TOOLCHAIN); for f in $$(git ls-files --cached --others --exclude-standard '*_test.go' | xargs grep -l '^func Fuzz'); do \
	  for t in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$f); do \
	    echo "fuzz $$t in ./$$(dirname $$f) for $(FUZZTIME)"; \
	    $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) ./$$(dirname $$f); \
	  done; \
	done

test-unit: ## Every test that needs no broker (integration tests skip).
	$(GO) test $(TESTFLAGS) $(PKGS)

kafka-start: ## Start the test broker (Apache Kafka from Maven Central, KRaft, loopback).
	@bash $(BROKER) start

kafka-stop: ## Stop the test broker.
	@bash $(BROKER) stop

tidy: ## go mod tidy in every module.
	@for m in $(MODULES); do (cd $$m && $(GO) mod tidy) || exit 1; done

# make bench's broker: ports of its own, so that it never meets make test's.
BENCH_KAFKA_PORT ?= 19892
BENCH_KAFKA_CONTROLLER_PORT ?= 19893

bench: ## Every component next to its baseline and the pipeline end to end, on a broker of its own: one table and .bench/results.json.
	@command -v wrk >/dev/null || { echo "installing wrk"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
	@mkdir -p .bench/bin
	$(GO) build -o .bench/bin/ ./services/rule-evaluator/cmd/evaluator-bench ./services/webhook-sender/cmd/webhook-bench \
	  ./services/ingest/cmd/ingest-bench ./services/devstack/cmd/bench
	@export HERALD_KAFKA_PORT=$(BENCH_KAFKA_PORT) HERALD_KAFKA_CONTROLLER_PORT=$(BENCH_KAFKA_CONTROLLER_PORT); \
	  bash $(BROKER) start && trap 'bash $(BROKER) stop >/dev/null 2>&1' EXIT; \
	  .bench/bin/bench -brokers $$(bash $(BROKER) brokers) -out .bench/results.json

bench-evaluator: ## Rule evaluator events/s on the real broker next to a plain passthrough, and the ratio.
	@bash $(BROKER) start
	@trap 'bash $(BROKER) stop >/dev/null 2>&1' EXIT; \
	  $(GO) run ./services/rule-evaluator/cmd/evaluator-bench -brokers $$(bash $(BROKER) brokers) -events 300000

bench-rules: ## go test -bench: one event against 1, 10 and 100 rules, Avro decode included.
	$(GO) test -run '^$$' -bench BenchmarkEvaluate -benchtime 2s ./services/rule-evaluator/

bench-webhook: ## Webhook sender deliveries/s against a local sink next to a bare net/http client loop (and wrk), and the ratio.
	@command -v wrk >/dev/null || { echo "installing wrk"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
	$(GO) run ./services/webhook-sender/cmd/webhook-bench

bench-email: peers ## Email channel emails/s over pooled SMTP sessions next to a new connection per email (aiosmtpd, a Go server), and the ratio.
	$(GO) run ./services/email-sender/cmd/email-bench -python $(VENV)/bin/python

bench-eventbridge: ## EventBridge sender notifications/s and entries per PutEvents call against a local stand-in, next to a PutEvents loop, and the ratio.
	$(GO) run ./services/eventbridge-sender/cmd/eventbridge-bench
