#!/usr/bin/env bash
# Fetches the ONNX Runtime CPU library and model weights into .imgserve/
# (or $IMGSERVE_HOME), verified against models/catalog/catalog.yaml and cached
# in ${XDG_CACHE_HOME:-$HOME/.cache}/imgserve. Run with --help for details.
#
# The work is done by the Go program cmd/fetch-models, which reads the catalog
# embedded in the models/catalog package; this wrapper only finds the repo and
# builds it.
set -euo pipefail

# Relative paths in the environment mean "relative to where I ran this",
# so resolve them before moving to the repo root.
for var in IMGSERVE_HOME IMGSERVE_CACHE XDG_CACHE_HOME; do
	val="${!var:-}"
	if [[ -n "$val" && "$val" != /* ]]; then
		export "$var=$PWD/$val"
	fi
done

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v go >/dev/null 2>&1; then
	echo "fetch-models: needs the Go toolchain (see go.mod for the version)" >&2
	exit 2
fi

# Build into the cache rather than `go run`, which would turn the program's
# exit status into 1; go build skips the work when nothing changed.
bin="${IMGSERVE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/imgserve}/bin/fetch-models"
go build -o "$bin" ./cmd/fetch-models
exec "$bin" "$@"
