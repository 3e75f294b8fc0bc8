GO      ?= go
BIN     ?= bin/clickgate
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

.PHONY: all build demo test deps vet unit bench fuzz clean

all: build

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/clickgate

## demo: the whole stack on this machine: ClickHouse (Debian's clickhouse-server,
## installed first when missing, unless CLICKHOUSE_URL names yours), a dataset,
## clickgate with its dev IdP, gateway and MCP; prints what to try; Ctrl-C stops
## it all. DEMO_FLAGS=--once checks it as both demo people and exits.
demo: build
	@if [ -z "$$CLICKHOUSE_URL" ] && [ ! -x /usr/sbin/clickhouse-server ] && ! command -v clickhouse-server >/dev/null 2>&1; then \
	  ./scripts/install-clickhouse.sh || echo "make demo: could not install clickhouse-server (see above)"; \
	fi
	./$(BIN) demo $(DEMO_FLAGS)

## test: install what the tests need, then run vet, the tests (race detector)
## and each benchmark once so that they keep working
test: deps vet unit

deps:
	./scripts/install-test-deps.sh
	./scripts/install-deploy-tools.sh

vet:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...

unit:
	$(GO) test -race -count=1 ./...
	$(GO) test -count=1 -run '^$$' -bench . -benchtime 1x ./...

## bench: the benchmarks with figures (see bench/README.md); the gateway
## benchmark (real ClickHouse, clickgate as its own process) takes ~2.5 min,
## the MCP one (the same, through the official Go MCP SDK client) ~40 s
bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 5 ./internal/token/ ./bench/...
	CLICKGATE_BENCH_GATEWAY=1 $(GO) test -run '^$$' -bench '^BenchmarkGateway$$' -benchtime 1x -count 1 -timeout 20m ./bench/gateway/
	CLICKGATE_BENCH_MCP=1 $(GO) test -run '^$$' -bench '^BenchmarkMCP(FullAnswer)?$$' -benchtime 1x -count 1 -timeout 10m ./bench/mcp/
	CLICKGATE_BENCH_AUDIT_COST=1 $(GO) test -run '^$$' -bench '^BenchmarkAuditTrail$$' -benchtime 1x -count 1 -timeout 10m ./bench/audit/
	CLICKGATE_BENCH_CLUSTER=1 $(GO) test -run '^$$' -bench '^BenchmarkCluster$$' -benchtime 1x -count 1 -timeout 20m ./bench/cluster/
	CLICKGATE_BENCH_NATIVE=1 $(GO) test -run '^$$' -bench '^BenchmarkNative$$' -benchtime 1x -count 1 -timeout 20m ./bench/native/

## bench-base: SELECT 1 through clickgate built here against clickgate built
## from BASE (a commit), side by side on one ClickHouse, requests interleaved
## (BenchmarkGatewayBase, bench/README.md): make bench-base BASE=618831a
.PHONY: bench-base
bench-base: build
	@test -n "$(BASE)" && git rev-parse -q --verify "$(BASE)^{commit}" >/dev/null || { echo "usage: make bench-base BASE=<commit>"; exit 1; }
	rm -rf bin/base-src && mkdir -p bin/base-src && git archive $(BASE) | tar -x -C bin/base-src
	cd bin/base-src && $(GO) build -ldflags "-X main.version=$$(git -C $(CURDIR) describe --tags --always $(BASE))" -o ../clickgate-base ./cmd/clickgate
	CLICKGATE_BENCH_BASE_BINARY=$(CURDIR)/bin/clickgate-base CLICKGATE_BENCH_NEW_BINARY=$(abspath $(BIN)) $(GO) test -run '^$$' -bench '^BenchmarkGatewayBase$$' -benchtime 1x -count 1 -timeout 20m ./bench/gateway/

## fuzz: run each fuzz target for FUZZTIME (default 30s)
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./internal/token/
	$(GO) test -run '^$$' -fuzz '^FuzzVerify$$' -fuzztime $(FUZZTIME) ./internal/token/
	$(GO) test -run '^$$' -fuzz '^FuzzParseTransform$$' -fuzztime $(FUZZTIME) ./internal/identity/
	$(GO) test -run '^$$' -fuzz '^FuzzLoad$$' -fuzztime $(FUZZTIME) ./internal/config/
	$(GO) test -run '^$$' -fuzz '^FuzzOpen$$' -fuzztime $(FUZZTIME) ./internal/oauth/seal/
	$(GO) test -run '^$$' -fuzz '^FuzzRegistration$$' -fuzztime $(FUZZTIME) ./internal/oauth/
	$(GO) test -run '^$$' -fuzz '^FuzzRedirectURIMatches$$' -fuzztime $(FUZZTIME) ./internal/oauth/
	$(GO) test -run '^$$' -fuzz '^FuzzTextPolicy$$' -fuzztime $(FUZZTIME) ./internal/clickhouse/
	$(GO) test -run '^$$' -fuzz '^FuzzGatewayInvariant$$' -fuzztime $(FUZZTIME) ./internal/gateway/

## image: the container image (deploy/Containerfile) with podman, or docker;
## IMAGE=name:tag names it (default clickgate:VERSION)
.PHONY: image
image:
	VERSION=$(VERSION) GO=$(GO) ./deploy/image.sh

clean:
	rm -rf bin .clickgate-demo
