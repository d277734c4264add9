# The tools `make generate` needs: Debian's protobuf-compiler, the Go plugins
# at the versions pinned here (installed into ./bin), and google/api's
# annotations.proto and http.proto, read from the module cache copy of a
# module that ships them (GOOGLEAPIS_MODULE) instead of being kept here.
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.0
GOOGLEAPIS_MODULE          := github.com/grpc-ecosystem/grpc-gateway@v1.16.0
BIN := $(CURDIR)/bin

.PHONY: build test lint generate tools clean bench bench-build bench-smoke

# build stamps the version (git describe) and commit into the binary, which
# keygate version prints; GOFLAGS=-buildvcs=false would otherwise leave the
# commit unknown.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null)
build:
	go build -ldflags "-X main.version=$(VERSION) -X main.commit=$(COMMIT)" -o $(BIN)/keygate ./cmd/keygate

# test runs the whole suite: the module's tests under the race detector, then
# the official OpenAI and Anthropic SDKs (sdktest/, a module of its own, with
# the Node SDKs pinned in sdktest/node) through Caddy and nginx.
test:
	go vet ./...
	go test -race ./...
	if command -v npm >/dev/null; then cd sdktest/node && npm ci --no-audit --no-fund; fi
	cd sdktest && go vet ./... && go test ./...

# lint runs the pinned golangci-lint (installed into ./bin) over the module.
GOLANGCI_LINT_VERSION := v2.15.0
lint:
	test -x $(BIN)/golangci-lint || GOBIN=$(BIN) go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	$(BIN)/golangci-lint run ./...

tools:
	GOBIN=$(BIN) go install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	GOBIN=$(BIN) go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)

# generate rebuilds what is derived from proto/: the Go code, and the admin
# API's OpenAPI document and route table in its package documentation (their
# tests rewrite them with -update, and fail when they are stale).
generate: tools
	PATH=$(BIN):$$PATH protoc -I proto \
		-I $$(go mod download -json $(GOOGLEAPIS_MODULE) | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$$/\1/p')/third_party/googleapis \
		--go_out=. --go_opt=module=github.com/keygate/keygate \
		--go-grpc_out=. --go-grpc_opt=module=github.com/keygate/keygate \
		proto/keygate/admin/v1/admin.proto proto/keygate/storage/v1/records.proto
	go test ./admin -run '^(TestOpenAPIDocument|TestDocRoutes)$$' -update

# bench runs keygate (on bolt and on a one-member etcd), a do-nothing grpc-go
# server and OPA-Envoy side by side (servers on CPU 0, the load generator and
# etcd on CPU 1) and rewrites docs/benchmarks.md and its chart. It takes
# about 22 minutes.
BENCH_FLAGS ?= -keys 1000,100000,1000000 -inflight 16,64
bench: bench-build
	taskset -c 1 go run ./bench/run -bin $(BIN) $(BENCH_FLAGS) -md docs/benchmarks.md -svg docs/benchmarks.svg

# bench-smoke runs every server for a second on 1,000 keys and fails if any
# answers wrongly; CI runs it so that the benchmark keeps working.
bench-smoke: bench-build
	taskset -c 1 go run ./bench/run -bin $(BIN) -smoke -work $(CURDIR)/bench/out/smoke

# OPA-Envoy is built in its own module (bench/opa) so that its dependencies
# stay out of ours.
bench-build: build
	go build -o $(BIN)/nop ./bench/nop
	go build -o $(BIN)/etcd ./bench/etcd
	cd bench/opa && go build -o $(BIN)/opa-envoy github.com/open-policy-agent/opa-envoy-plugin/cmd/opa-envoy-plugin

clean:
	rm -rf $(BIN)
