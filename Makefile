# The two set-up commands (see README.md):
#   make run   fetch ONNX Runtime and the default models, start the server
#   make test  fetch what the tests need, check formatting and vet, run every test
# Both work on a fresh machine with Go, gcc and npm; downloads are cached in
# ~/.cache/imgserve, so later runs fetch nothing.

GO ?= go
ARGS ?=
# `make run ARGS='--device cuda'` (or auto) also fetches the CUDA build.
FETCH_ARGS = $(if $(filter cuda cuda:% auto,$(subst =, ,$(ARGS))),--gpu)

.PHONY: run test fetch fetch-test build bench

run: fetch
	$(GO) run ./cmd/imgserve $(ARGS)

test: fetch-test
	@unformatted="$$(gofmt -l $$(git ls-files '*.go'))"; \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 15m ./...
	# Allocation counts differ under -race; those tests build only without it.
	$(GO) test -count=1 -run Alloc ./...

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
	$(GO) build -o bin/imgserve ./cmd/imgserve

# Benchmarks are run by hand; bench/README.md records results and commands.
bench: fetch
	$(GO) test -run '^$$' -bench . -benchmem ./bench/
