#!/usr/bin/env bash
# Regenerates server/kserve/inferencepb from Triton's .proto files beside it.
# The generated Go is committed, so building and testing need none of this;
# run it only after changing the .proto files. Needs protoc (Debian:
# protobuf-compiler) and Go; the two Go plugins are installed at pinned
# versions into ~/.cache/imgserve/tools.
set -euo pipefail
cd "$(dirname "$0")/.."

PROTOC_GEN_GO=google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
PROTOC_GEN_GO_GRPC=google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2

command -v protoc >/dev/null || { echo "gen-proto: protoc not found; apt-get install protobuf-compiler" >&2; exit 1; }
tools="${XDG_CACHE_HOME:-$HOME/.cache}/imgserve/tools"
mkdir -p "$tools"
GOBIN="$tools" go install "$PROTOC_GEN_GO"
GOBIN="$tools" go install "$PROTOC_GEN_GO_GRPC"

dir=server/kserve/inferencepb
pkg=github.com/imgserve/imgserve/$dir
# The .proto files stay byte for byte Triton's (no go_package option added):
# the Go package is given with M flags instead.
maps="Mgrpc_service.proto=$pkg;inferencepb,Mmodel_config.proto=$pkg;inferencepb"
PATH="$tools:$PATH" protoc -I "$dir" \
  --go_out="$dir" --go_opt=paths=source_relative,"$maps" \
  --go-grpc_out="$dir" --go-grpc_opt=paths=source_relative,"$maps" \
  "$dir/grpc_service.proto" "$dir/model_config.proto"
gofmt -l "$dir"
echo "gen-proto: regenerated $dir"
