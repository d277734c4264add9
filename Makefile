# The tools `make generate` needs: Debian's protobuf-compiler, and the Go
# plugins at the versions pinned here (installed into ./bin).
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.0
BIN := $(CURDIR)/bin

.PHONY: build test generate tools clean

build:
	go build -o $(BIN)/keygate ./cmd/keygate

test:
	go vet ./...
	go test -race ./...

tools:
	GOBIN=$(BIN) go install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	GOBIN=$(BIN) go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)

# generate rebuilds the committed Go code from proto/.
generate: tools
	PATH=$(BIN):$$PATH protoc -I proto \
		--go_out=. --go_opt=module=github.com/keygate/keygate \
		--go-grpc_out=. --go-grpc_opt=module=github.com/keygate/keygate \
		proto/keygate/admin/v1/admin.proto proto/keygate/storage/v1/records.proto

clean:
	rm -rf $(BIN)
