# Warden. `make run` builds everything and serves the demo model;
# `make test` runs every test, the integration tests against the real Ollama included.

GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.Version=$(VERSION)
OLLAMA   := $(CURDIR)/bin/ollama
WARDEN   := $(CURDIR)/bin/warden

# Tests that need the real backend find it here and fail loudly without it.
export WARDEN_TEST_OLLAMA := $(OLLAMA)

.DEFAULT_GOAL := help
.PHONY: help build backend run test test-deps vet fmt-check tidy-check bench fuzz clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## Build bin/warden
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(WARDEN) ./cmd/warden

backend: ## Build bin/ollama (CPU only) from the version pinned in go.mod; quick when built
	@bash scripts/build-ollama.sh

run: build backend ## Build everything and serve the demo model on 127.0.0.1:8080
	$(WARDEN) serve $(ARGS)

test: backend test-deps vet fmt-check tidy-check ## Run go vet, gofmt, tidy check and every test with -race (builds bin/ollama first)
	$(GO) test -race -count=1 -timeout 30m ./...

test-deps: ## Install what the tests run for real (rsyslog with TLS, openssl)
	@bash scripts/install-test-deps.sh

vet: ## go vet
	$(GO) vet ./...

fmt-check: ## Fail when gofmt would change a file
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

tidy-check: ## Fail when go.mod/go.sum are not tidy
	$(GO) mod tidy -diff

bench: build backend ## Benchmark Warden against direct Ollama (A/B, interleaved)
	$(GO) run ./scripts/bench -warden $(WARDEN) -ollama $(OLLAMA)

FUZZ_PKGS = ./server/ ./safety/keys/ ./safety/filter/ $(shell $(GO) list ./safety/detect/... 2>/dev/null | sed 's|^github.com/warden-llm/warden|.|')

fuzz: ## Run each fuzz target (parsers, detectors, the stream filter) for FUZZTIME (default 30s)
	@for p in $(FUZZ_PKGS); do \
		for t in $$($(GO) test -list '^Fuzz' $$p | grep ^Fuzz); do \
			$(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $${FUZZTIME:-30s} $$p || exit 1; done; done

clean: ## Remove bin/ (the ollama build too)
	rm -rf bin
