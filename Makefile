# audittail: every task a person or CI runs goes through this file.
GO        ?= go
BIN       := bin/audittail
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
FUZZTIME  ?= 20s
PKGS      := ./...
# Modules of their own inside the repository, so that audittail's go.mod
# does not carry what only they use: comparisons with other libraries and
# experiments. `go test ./...` at the root does not enter them; make test
# vets and tests each, so that they do not rot.
NESTED    := parser/internal/compare outputs/fluentd/internal/compare scripts/experiments source/webhook/internal/apiservertest outputs/otlp/internal/otlptest outputs/kafka/internal/kafkatest policy/internal/difftest outputs/webhook/internal/webhooktest
# staticcheck 2026.2.2, which supports Go 1.26. make deps installs it where
# go install puts it (GOBIN, else the first GOPATH entry's bin).
STATICCHECK_VERSION := v0.8.2
STATICCHECK ?= $(or $(shell $(GO) env GOBIN),$(firstword $(subst :, ,$(shell $(GO) env GOPATH)))/bin)/staticcheck

.DEFAULT_GOAL := help
.PHONY: help deps build test unit nested lint fmt vet staticcheck fuzz fuzz-short bench bench-parser demo image clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

deps: ## download Go modules, install staticcheck and the Debian packages the tests use
	$(GO) mod download
	@for m in $(NESTED); do (cd $$m && $(GO) mod download) || exit 1; done
	@if ! $(STATICCHECK) -version 2>/dev/null | grep -qF '($(STATICCHECK_VERSION:v%=%))'; then \
		echo "$(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)"; \
		$(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) || exit 1; \
	fi
	./scripts/install-test-deps.sh

build: ## build bin/audittail (static)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/audittail

test: deps lint unit nested fuzz-short ## everything CI runs: lint, race tests, the nested modules' tests, short fuzzing

unit: ## go test -race ./...
	$(GO) test -race -timeout 15m -count=1 $(PKGS)

nested: ## go test, and every benchmark once, in each nested module (NESTED)
	@for m in $(NESTED); do echo "go test ./... in $$m"; (cd $$m && $(GO) test -count=1 -bench . -benchtime 1x ./...) || exit 1; done

lint: fmt vet staticcheck ## gofmt check + go vet + staticcheck

fmt: ## fail if gofmt would change a file
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet: ## go vet, here and in each nested module
	$(GO) vet $(PKGS)
	@for m in $(NESTED); do echo "go vet ./... in $$m"; (cd $$m && $(GO) vet ./...) || exit 1; done

staticcheck: ## staticcheck (its default checks), here and in each nested module
	@test -x $(STATICCHECK) || { echo "staticcheck not found at $(STATICCHECK): run make deps"; exit 1; }
	$(STATICCHECK) $(PKGS)
	@for m in $(NESTED); do echo "staticcheck ./... in $$m"; (cd $$m && $(STATICCHECK) ./...) || exit 1; done

fuzz-short: ## run each fuzz target briefly (FUZZTIME, default 20s)
	GO=$(GO) FUZZTIME=$(FUZZTIME) ./scripts/fuzz.sh

FUZZLONG ?= 5m

fuzz: ## fuzz each target for longer (FUZZLONG, default 5m)
	$(MAKE) fuzz-short FUZZTIME=$(FUZZLONG)

BENCH_MB ?= 1000

bench: build ## the follower vs cat (500 MB), the webhook input (fsync before 200), then file -> each output end to end (BENCH_MB, default 1000)
	BENCH_DIR=$(CURDIR)/.bench BENCH_MB=500 $(GO) test -run '^$$' -bench '^(BenchmarkCat|BenchmarkFollowerOnly|BenchmarkFollow|BenchmarkFanOut)$$' -benchtime 3x ./agent
	mkdir -p .bench && BENCH_DIR=$(CURDIR)/.bench $(GO) test -run '^$$' -bench '^BenchmarkWebhook$$' -benchtime 400x -count 3 ./source/webhook
	cd outputs/kafka/internal/kafkatest && $(GO) test -run '^$$' -bench '^BenchmarkKafka$$' -count 3 .
	$(GO) test -run '^$$' -bench '^(BenchmarkEncodeMetadata|BenchmarkSendMetadata)$$' -count 3 ./outputs/otlp
	$(GO) run ./scripts/bench -bin $(BIN) -mb $(BENCH_MB) -dir .bench

bench-parser: ## parser vs encoding/json, json-iterator, fastjson: one table, one process (BENCH_ROUNDS, default 3); then Scan vs Scan plus a 20-rule policy decision
	cd parser/internal/compare && AUDITTAIL_BENCH_TABLE=1 AUDITTAIL_BENCH_ROUNDS=$(BENCH_ROUNDS) $(GO) test -run '^TestPrintBenchTable$$' -count=1 -timeout 15m
	$(GO) test -run '^$$' -bench '^BenchmarkDecideRatio$$' -count 5 ./policy

demo: build ## write rotating audit logs, ship them to a file, check nothing was lost
	./scripts/demo.sh

image: ## docker build -t audittail:$(VERSION) (needs a Docker engine; CI has none and does not run it)
	docker build --build-arg VERSION=$(VERSION) -t audittail:$(VERSION) .

clean: ## remove build and demo output
	rm -rf bin .demo .bench
