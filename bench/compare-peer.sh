#!/usr/bin/env bash
# Background removal with u2netp, imgserve against the Node peer (Node +
# sharp + onnxruntime-node, 2 threads: the pipeline a team would write
# without imgserve), one after the other in one run, on the same images.
#
#   bench/compare-peer.sh PEER_DIR [ROUNDS]
#
# PEER_DIR holds the peer's e2e_peer.js with its packages installed
# (`npm install --ignore-scripts` there). Run it under the bench lock so
# nobody else measures at the same time:
#
#   flock /tmp/imgserve-bench.lock bench/compare-peer.sh /tmp/peer 3
#
# Each round measures, per image, imgserve's lone-request latency (one
# client, 6 s; median and Server-Timing stages) and then the peer's (its own
# mean of 5 after a warm-up). Afterwards imgserve's throughput at 4 and 16
# concurrent clients on car-1. Env: PORT (18300), CONFIG (a --config file;
# default: the built-in defaults), TAGS (go build tags; default: libjpeg and
# libdeflate where pkg-config finds them, as the Makefile does).
set -euo pipefail
peer=$(cd "${1:?usage: bench/compare-peer.sh PEER_DIR [ROUNDS]}" && pwd)
rounds=${2:-3}
port=${PORT:-18300}
cd "$(dirname "$0")/.."
root=$PWD
tags=${TAGS-$(for l in libjpeg libdeflate; do pkg-config --exists $l 2>/dev/null && printf '%s ' $l; done)}
model=$root/.imgserve/models/u2netp.onnx
[ -f "$peer/e2e_peer.js" ] || { echo "no e2e_peer.js in $peer" >&2; exit 2; }
[ -f "$model" ] || { echo "no $model: run scripts/fetch-models.sh" >&2; exit 2; }

tmp=$(mktemp -d)
server=
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
go build -tags "$tags" -o "$tmp/imgserve" ./cmd/imgserve
go build -o "$tmp/loadgen" ./bench/loadgen
go run ./bench/photos -out "$tmp" >/dev/null
images=(car-1.jpg photo-1.5MP.jpg photo-1.5MP.png)

"$tmp/imgserve" --addr "127.0.0.1:$port" ${CONFIG:+--config "$CONFIG"} 2>"$tmp/server.log" &
server=$!
for _ in $(seq 300); do
  curl -sf "http://127.0.0.1:$port/v2/health/ready" >/dev/null && break
  sleep 0.2
done
curl -sf "http://127.0.0.1:$port/v2/health/ready" >/dev/null || { cat "$tmp/server.log"; exit 1; }
grep -o 'decoders="[^"]*"' "$tmp/server.log" || true
# The builds above leave the CPU pressure high for a while, and a lone run
# spins only on a quiet host (models/defaults.yaml, wide_spin): let it
# settle, so that round 1 measures the server as a quiet host runs it.
if [ -r /proc/pressure/cpu ]; then
  for _ in $(seq 60); do
    awk '/^some/ { split($2, a, "="); exit !(a[2] < 10) }' /proc/pressure/cpu && break
    sleep 1
  done
  echo "cpu pressure: $(head -1 /proc/pressure/cpu)"
fi
echo "config: ${CONFIG:-built-in defaults}; $(nproc) CPUs; load average $(cut -d' ' -f1-3 /proc/loadavg)"

for r in $(seq "$rounds"); do
  echo "== round $r"
  for img in "${images[@]}"; do
    echo "-- imgserve $img"
    "$tmp/loadgen" -url "http://127.0.0.1:$port" -image "$tmp/$img" -c 1 -d 6s -warmup 1s \
      -path '/v1/remove-background?model=u2netp' | tail -n +4
  done
  echo "-- peer"
  (cd "$peer" && MODEL="$model" node e2e_peer.js "${images[@]/#/$tmp/}")
done
echo "== throughput, car-1.jpg"
"$tmp/loadgen" -url "http://127.0.0.1:$port" -image "$tmp/car-1.jpg" -c 4,16 -d 15s -warmup 3s \
  -path '/v1/remove-background?model=u2netp' | tail -n +4
