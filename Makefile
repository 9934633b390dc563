# The two set-up commands (see README.md):
#   make run   fetch ONNX Runtime and the default models, start the server
#   make test  fetch what the tests need, check formatting and vet, run every test
# Both work on a fresh machine with Go, gcc and npm; downloads are cached in
# ~/.cache/imgserve, so later runs fetch nothing.

GO ?= go
ARGS ?=
# `make run ARGS='--device cuda'` (or auto) also fetches the CUDA build.
FETCH_ARGS = $(if $(filter cuda cuda:% auto,$(subst =, ,$(ARGS))),--gpu)

# Native codec libraries, each used when pkg-config finds it:
#   libjpeg    libjpeg-turbo (Debian/Ubuntu: libjpeg62-turbo-dev), which decodes
#              JPEG exactly as PIL, and so rembg, does
#   libdeflate libdeflate (libdeflate-dev), for PNG decoding
# Without them the build falls back to pure Go and says so at start-up;
# under CI=true a missing one fails the build instead, so that CI always
# tests the native paths.
NATIVE_LIBS := libjpeg libdeflate
TAGS ?= $(strip $(foreach lib,$(NATIVE_LIBS),$(shell pkg-config --exists $(lib) 2>/dev/null && echo $(lib))))
ifeq ($(CI),true)
ifneq ($(filter-out $(TAGS),$(NATIVE_LIBS)),)
$(error CI=true but $(filter-out $(TAGS),$(NATIVE_LIBS)) missing (pkg-config): install libjpeg62-turbo-dev libdeflate-dev)
endif
endif
GOFLAGS_TAGS := -tags '$(TAGS)'

.PHONY: run test fetch fetch-test build bench proto

run: fetch
	$(GO) run $(GOFLAGS_TAGS) ./cmd/imgserve $(ARGS)

test: fetch-test
	@unformatted="$$(gofmt -l $$(git ls-files '*.go'))"; \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet $(GOFLAGS_TAGS) ./...
	$(GO) test $(GOFLAGS_TAGS) -race -count=1 -timeout 15m ./...
	# Allocation counts differ under -race; those tests build only without it.
	$(GO) test $(GOFLAGS_TAGS) -count=1 -run Alloc ./...

fetch:
	scripts/fetch-models.sh $(FETCH_ARGS)

# The tests also need the CUDA build's 28 MB core library (not its 230 MB
# CUDA provider): the u2netp parity tests run on it too, on its CPU provider.
# And PGlite (PostgreSQL with pgvector, from npm) for the tests of
# --index-postgres.
fetch-test: fetch
	scripts/fetch-models.sh onnxruntime-cuda
	scripts/fetch-pglite.sh

build:
	$(GO) build $(GOFLAGS_TAGS) -o bin/imgserve ./cmd/imgserve

# Benchmarks are run by hand; bench/README.md records results and commands.
bench: fetch
	$(GO) test $(GOFLAGS_TAGS) -run '^$$' -bench . -benchmem ./bench/

# Regenerates the KServe v2 gRPC code (server/kserve/inferencepb) from
# Triton's .proto files; needs protoc. The generated code is committed.
proto:
	scripts/gen-proto.sh
