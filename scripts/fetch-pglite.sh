#!/usr/bin/env bash
# Installs PGlite (PostgreSQL compiled to WASM) with pgvector and its
# wire-protocol server, which the tests of --index-postgres start on a
# loopback port. Versions are pinned in internal/pgtest/pglite/package.json
# and package-lock.json (npm checks every file against the lockfile's
# sha512); the install lives in ~/.cache/imgserve/pglite-<hash of both
# files>, so a fresh clone reuses it and a change of version installs anew.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
src="$root/internal/pgtest/pglite"
hash="$(cat "$src/package.json" "$src/package-lock.json" | sha256sum | cut -c1-16)"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/imgserve"
dest="$cache/pglite-$hash"
if [ -f "$dest/.complete" ]; then
	echo "pglite: cached in $dest"
	exit 0
fi
command -v npm >/dev/null || { echo "fetch-pglite: npm is needed to install the PGlite test server (apt-get install npm)" >&2; exit 1; }
mkdir -p "$cache"
tmp="$(mktemp -d "$cache/.pglite-$hash.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
cp "$src/package.json" "$src/package-lock.json" "$tmp/"
echo "pglite: installing into $dest"
(cd "$tmp" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
touch "$tmp/.complete"
if ! mv -T "$tmp" "$dest" 2>/dev/null; then
	[ -f "$dest/.complete" ] || { echo "fetch-pglite: could not move the install into $dest" >&2; exit 1; }
fi
trap - EXIT
echo "pglite: installed in $dest"
