# Warden. `make run` builds everything and serves the demo model.
# Tests come in three tiers: `make check` (vet, gofmt, tidy, staticcheck,
# deadcode), `make unit` (fast tests, no external binaries) and `make test`
# (everything, the integration tests against the real Ollama included).

SHELL    := /bin/bash
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.Version=$(VERSION)
OLLAMA   := $(CURDIR)/bin/ollama
WARDEN   := $(CURDIR)/bin/warden
PREFIX   ?= /usr/local
BINDIR   := $(PREFIX)/bin

# Tests that need the real backend find it here and fail loudly without it.
export WARDEN_TEST_OLLAMA := $(OLLAMA)

.DEFAULT_GOAL := help
.PHONY: help build backend run check unit test eval test-deps vet vet-nocgo fmt-check tidy-check staticcheck deadcode bench fuzz install clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## Build bin/warden
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(WARDEN) ./cmd/warden

backend: ## Build bin/ollama (CPU only) from the version pinned in go.mod; quick when built
	@bash scripts/build-ollama.sh

run: build backend ## Build everything and serve the demo model on 127.0.0.1:8080
	$(WARDEN) serve $(ARGS)

check: vet vet-nocgo fmt-check tidy-check staticcheck deadcode ## Static checks: go vet (cgo on and off), gofmt, tidy, staticcheck, deadcode

unit: ## Fast tests with -race: -short skips those needing Ollama or rsyslog (no external binaries)
	$(GO) test -short -race -count=1 ./...

test: backend test-deps check ## Everything: make check, then every test with -race (builds bin/ollama first)
	$(GO) test -race -count=1 -timeout 30m ./...

# The detectors' scores on other projects' published data sets, which this
# repository names but does not copy: they sit in ../shared/<name> beside the
# clone or in $$WARDEN_SHARED_DATA/<name> (docs/development.md).
eval: ## Score the injection classifier and secret detector on public data sets in ../shared
	$(GO) test -tags eval -count=1 -run '^(TestHeldoutScores|TestRealWorld)$$' -v ./safety/detect/classifier ./safety/detect/secret

test-deps: ## Install what the tests run for real (rsyslog with TLS, openssl, systemd-analyze)
	@bash scripts/install-test-deps.sh

vet: ## go vet (also the eval-tagged tests)
	$(GO) vet ./...
	$(GO) vet -tags eval ./safety/detect/...

vet-nocgo: ## go vet with cgo off (the NVML and SQLite stubs must keep building)
	CGO_ENABLED=0 $(GO) vet ./...

fmt-check: ## Fail when gofmt would change a file
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

tidy-check: ## Fail when go.mod/go.sum are not tidy
	$(GO) mod tidy -diff

staticcheck: ## staticcheck, the version pinned by go.mod's tool directive
	$(GO) tool staticcheck ./...

# deadcode runs from the binaries' main functions, without -test: code only
# tests reach is dead to a user. deadcode.allow keeps functions (or whole
# test-support packages, PKG.*) on purpose, each with a reason.
deadcode: ## Fail on functions no binary reaches, except those deadcode.allow keeps with a reason
	@out=$$($(GO) tool deadcode -f '{{range .Funcs}}{{printf "%s.%s\n" $$.Path .Name}}{{end}}' ./... | \
		awk 'NR == FNR { if (NF && $$1 !~ /^#/) allow[$$1] = 1; next } \
		{ pkg = $$0; sub(/\.[^\/]*$$/, "", pkg) } !(($$0 in allow) || ((pkg ".*") in allow))' deadcode.allow -); \
	if [ -n "$$out" ]; then echo "unreachable functions (delete them, or list them in deadcode.allow with a reason):"; echo "$$out"; exit 1; fi

bench: build backend ## Benchmark Warden against direct Ollama (A/B, interleaved)
	$(GO) run ./scripts/bench -warden $(WARDEN) -ollama $(OLLAMA)

FUZZ_PKGS = ./server/ ./models/ ./safety/keys/ ./safety/filter/ ./safety/probe/ ./safety/dataset/ $(shell $(GO) list ./safety/detect/... 2>/dev/null | sed 's|^github.com/warden-llm/warden|.|')

fuzz: ## Run each fuzz target (parsers, detectors, the stream filter) for FUZZTIME (default 30s)
	@for p in $(FUZZ_PKGS); do \
		for t in $$($(GO) test -list '^Fuzz' $$p | grep ^Fuzz); do \
			$(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $${FUZZTIME:-30s} $$p || exit 1; done; done

install: build ## Install warden (and bin/ollama when built and no ollama is there) to $(DESTDIR)$(PREFIX)/bin, the systemd unit, its sysusers.d and tmpfiles.d files
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)/etc/systemd/system $(DESTDIR)/usr/lib/sysusers.d $(DESTDIR)/usr/lib/tmpfiles.d
	install -m 0755 $(WARDEN) $(DESTDIR)$(BINDIR)/warden
	@if [ -x $(OLLAMA) ] && [ ! -e $(DESTDIR)$(BINDIR)/ollama ]; then \
		install -m 0755 $(OLLAMA) $(DESTDIR)$(BINDIR)/ollama; echo "installed $(DESTDIR)$(BINDIR)/ollama (CPU build)"; \
	else echo "kept the ollama already in $(DESTDIR)$(BINDIR), if any (warden prefers an ollama >= 0.17.1 on PATH)"; fi
	sed 's|@BINDIR@|$(BINDIR)|g' scripts/systemd/warden.service > $(DESTDIR)/etc/systemd/system/warden.service
	install -m 0644 scripts/systemd/warden.sysusers $(DESTDIR)/usr/lib/sysusers.d/warden.conf
	install -m 0644 scripts/systemd/warden.tmpfiles $(DESTDIR)/usr/lib/tmpfiles.d/warden.conf
	@if [ -z "$(DESTDIR)" ] && command -v systemd-sysusers >/dev/null; then systemd-sysusers warden.conf 2>/dev/null || systemd-sysusers; systemd-tmpfiles --create /usr/lib/tmpfiles.d/warden.conf; fi
	@echo "next: put your config in /etc/warden/warden.toml, then: systemctl daemon-reload && systemctl enable --now warden"

clean: ## Remove bin/ (the ollama build too)
	rm -rf bin
