# weft — the two commands: `make run` and `make test`.
GO      ?= go
BIN     := bin/weft
export GOFLAGS ?= -buildvcs=false
# Static binaries: bin/weft runs in FROM-scratch images and in mesh/vmtest's
# VM as built, and the tests that need static builds reuse the cache.
export CGO_ENABLED ?= 0
export PATH := $(PATH):/usr/local/go/bin:/usr/sbin:/sbin

.PHONY: run build test test-unit vet bench deps clean fuzz

## run: build and start a one-node cluster (weft up) on this machine
run:
	$(GO) run ./cmd/weft up $(ARGS)

## build: bin/weft
build:
	$(GO) build -o $(BIN) ./cmd/weft

deps:
	@scripts/deps.sh test

## test: install what the tests need, vet, then every test (unit, in-process, end-to-end)
test: deps vet build
	WEFT_BIN=$(abspath $(BIN)) $(GO) test -count=1 -timeout 19m ./...
	@echo "UI screenshots (e2e TestUI): $(abspath bin/ui-screenshots)"

## vet: go vet, gofmt, go mod tidy -diff, staticcheck and deadcode -test (pinned in scripts/tool.sh)
vet:
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed: $$out"; exit 1; fi
	@$(GO) mod tidy -diff || { echo "go.mod/go.sum are not tidy: run go mod tidy"; exit 1; }
	$$(GO=$(GO) scripts/tool.sh staticcheck) ./...
	@out=$$($$(GO=$(GO) scripts/tool.sh deadcode) -test ./...); if [ -n "$$out" ]; then echo "deadcode (unreachable from main or any test):"; echo "$$out"; exit 1; fi

## bench: side-by-side benchmarks (installs haproxy, wrk, nsd, dnsperf, iperf3)
bench: build
	@scripts/deps.sh bench
	WEFT_BIN=$(abspath $(BIN)) scripts/bench.sh

## fuzz: run each fuzz target in turn for FUZZTIME (nightly: make fuzz FUZZTIME=10m);
## `make test` runs their seed corpora (testdata/fuzz) as ordinary tests
FUZZTIME ?= 1m
FUZZ_TARGETS := \
	./lb:FuzzHTTP1Differential ./lb:FuzzTableLabels \
	./sched/marathon:FuzzAppJSON ./sched/marathon:FuzzLabels \
	./sched/chronos:FuzzSchedule \
	./dns:FuzzHandle ./dns:FuzzBuildRecords
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "== $$name ($$pkg) for $(FUZZTIME)"; \
		$(GO) test $$pkg -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME); \
	done

clean:
	rm -rf bin
