#!/usr/bin/env bash
# Proves the CUDA path on a GPU host, by hand (no test runs it): records
# what the host has, runs the u2netp parity tests on CUDA, and measures
# u2netp at batch 1 to 32 on CUDA and, for comparison, on the CPU. Results
# go to $OUT (default ./gpu-check/); bench/README.md says what to copy from
# them.
#
# Needs the CUDA build of ONNX Runtime (scripts/fetch-models.sh --gpu, which
# also fetches u2netp), the NVIDIA driver, CUDA 13 and cuDNN 9: the server's
# own start-up check (imgserve --device cuda) names anything missing.
# Set GPU_CHECK_QUICK=1 for one run per batch size instead of several.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

out="${OUT:-gpu-check}"
mkdir -p "$out"
home="$(cd "${IMGSERVE_HOME:-.imgserve}" && pwd)"
lib="$home/lib/cuda/libonnxruntime.so"
benchtime=3s
[[ "${GPU_CHECK_QUICK:-}" == 1 ]] && benchtime=3x

step() { echo "== $*" | tee -a "$out/summary.txt"; }

step "host"
{
	date -u
	uname -a
	if command -v nvidia-smi >/dev/null; then nvidia-smi 2>&1; else echo "nvidia-smi: not found"; fi
} >"$out/host.txt"
{
	ldconfig -p 2>/dev/null | grep -E 'lib(cuda|cudart|cublas|cublasLt|cudnn[a-z_]*|cufft|curand|nvrtc)\.so' || echo "ldconfig: no CUDA libraries"
	echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
} >"$out/cuda-libs.txt"
head -20 "$out/host.txt" | tee -a "$out/summary.txt"

step "start-up check (imgserve --device cuda)"
bin="$(mktemp -d)/imgserve"
go build -o "$bin" ./cmd/imgserve || exit 1
: >"$out/startup.txt"
"$bin" --device cuda --addr 127.0.0.1:0 --grpc-addr 127.0.0.1:0 --models-dir "$(mktemp -d)" >"$out/startup.txt" 2>&1 &
pid=$!
for _ in $(seq 60); do
	grep -q "imgserve listening\|cannot run here\|stopped" "$out/startup.txt" && break
	sleep 1
done
kill "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
tee -a "$out/summary.txt" <"$out/startup.txt"
if ! grep -q 'msg=GPU' "$out/startup.txt"; then
	echo "the CUDA provider cannot start here; see $out/startup.txt" | tee -a "$out/summary.txt"
	exit 1
fi

export IMGSERVE_HOME="$home"
step "u2netp parity with rembg on CUDA"
IMGSERVE_ORT_LIB="$lib" IMGSERVE_TEST_DEVICE=cuda:0 go test -count=1 -v \
	-run '^(TestRembgParityAndISNet|TestKServeServesRealU2netpLikeSessionRun)$' ./server 2>&1 |
	tee "$out/parity-cuda.txt" | grep -E 'testruntime|vs rembg|^(--- |ok|FAIL)' | tee -a "$out/summary.txt"

step "u2netp batch 1-32 on CUDA"
IMGSERVE_ORT_LIB="$lib" IMGSERVE_TEST_DEVICE=cuda:0 go test -count=1 -run '^$' \
	-bench 'U2netpBatch' -benchtime "$benchtime" ./bench 2>&1 | tee "$out/bench-cuda.txt" | grep -E '^Benchmark|FAIL' | tee -a "$out/summary.txt"

step "u2netp batch 1 and 16 on the CPU, for comparison"
go test -count=1 -run '^$' -bench 'U2netpBatch/(1|16)$' -benchtime 3x ./bench 2>&1 |
	tee "$out/bench-cpu.txt" | grep -E '^Benchmark|FAIL' | tee -a "$out/summary.txt"
