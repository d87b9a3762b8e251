# Gojinn build, test and run targets. `make run` and `make test` are all a
# fresh machine needs: `make deps` installs what they use.

GO        ?= go
BIN       := bin
DATA      ?= .gojinn
PKGS      := ./...
STAMP     := .deps.stamp
GOLANGCI  := $(shell $(GO) env GOPATH)/bin/golangci-lint
GOLANGCI_VERSION := v2.15.0
# VERSION names the build (gojinn-node version, members, /v1/status).
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
export CGO_ENABLED := 0

.PHONY: all deps build build-all run test test-short check lint fmt bench fuzz clean examples docker-test

all: check test

## deps: install the Debian packages and Go tools the build and tests use.
deps: $(STAMP)
$(STAMP):
	@if ! command -v wat2wasm >/dev/null; then \
		echo "installing wabt (wat2wasm) from Debian"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq wabt >/dev/null; \
	fi
	@$(GO) mod download
	@touch $(STAMP)

## build: the static gojinn-node binary for this machine.
build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/gojinn-node ./cmd/gojinn-node

## build-all: static binaries for linux/amd64 and linux/arm64.
build-all:
	GOOS=linux GOARCH=amd64 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/gojinn-node-linux-amd64 ./cmd/gojinn-node
	GOOS=linux GOARCH=arm64 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/gojinn-node-linux-arm64 ./cmd/gojinn-node

## examples: compile every example guest to bin/examples/NAME{,.pooled}.wasm.
examples:
	@mkdir -p $(BIN)/examples
	@for d in examples/*/; do n=$$(basename $$d); \
		if [ -f $$d/main.go ]; then \
			GOOS=wasip1 GOARCH=wasm $(GO) build -o $(BIN)/examples/$$n.wasm ./$$d && \
			GOOS=wasip1 GOARCH=wasm $(GO) build -buildmode=c-shared -o $(BIN)/examples/$$n.pooled.wasm ./$$d || exit 1; \
		fi; \
		for w in $$d*.wat; do if [ -f $$w ]; then wat2wasm $$w -o $(BIN)/examples/$$n.wasm || exit 1; fi; done; \
	done

## run: build and start a single node with the hello example on localhost.
run: deps build examples
	$(BIN)/gojinn-node dev --data $(DATA)

## test: the whole test suite, with the race detector.
test: deps
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 30m $(PKGS)

## test-short: the suite without the race detector, for a quick loop.
test-short: deps
	$(GO) test -count=1 $(PKGS)

## docker-test: a three-node cluster in containers from deploy/docker/Dockerfile
## (FROM scratch): join, deploy, the leader cut off and reconnected, every
## node moved to another subnet at once (about 60 s; needs a Docker engine,
## pulls nothing; `make test` skips it).
docker-test: deps build
	GOJINN_DOCKER_TEST=1 $(GO) test -count=1 -timeout 10m ./test/docker/

## check: formatting, vet, lint and a tidy go.mod.
check: deps lint
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: run gofmt -w on the files above"; exit 1; }
	$(GO) vet $(PKGS)
	GOOS=wasip1 GOARCH=wasm $(GO) vet ./sdk/... ./examples/...
	@cp go.mod /tmp/gojinn.go.mod.bak; cp go.sum /tmp/gojinn.go.sum.bak; \
	$(GO) mod tidy; \
	if ! git diff --quiet -- go.mod go.sum; then git diff -- go.mod go.sum; echo "go mod tidy changed go.mod/go.sum: commit the tidy result"; \
		cp /tmp/gojinn.go.mod.bak go.mod; cp /tmp/gojinn.go.sum.bak go.sum; exit 1; fi

lint: $(GOLANGCI)
	$(GOLANGCI) run ./...

$(GOLANGCI):
	$(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_VERSION)

## bench: the runtime benchmarks, requests per second through a node
## against native baselines, then the cluster's deploy propagation,
## failover, gossip and KV write benchmarks (about 5 min in all; see
## docs/benchmarks.md).
bench: deps
	$(GO) test -run '^$$' -bench . -benchmem -count 1 -benchtime 2s ./runtime/... ./sdk/go/...
	$(GO) test -run '^$$' -bench . -benchtime 1x ./cmd/gojinn-node/
	$(GO) test -run '^$$' -bench . -benchtime 1x -count 1 -timeout 20m ./cluster/

## fuzz: run every fuzz target for FUZZTIME each.
FUZZTIME ?= 30s
fuzz: deps
	@for t in $$(grep -rhoE 'func Fuzz[A-Za-z0-9_]+' --include=*_test.go . | sed 's/func //' | sort -u); do \
		pkg=$$(grep -rlE "func $$t\(" --include=*_test.go . | head -1 | xargs dirname); \
		echo "== $$t ($$pkg)"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	done

clean:
	rm -rf $(BIN) $(STAMP)
