package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/imgserve/imgserve/inference"
	"github.com/imgserve/imgserve/internal/paths"
	"github.com/imgserve/imgserve/models"
	"github.com/imgserve/imgserve/models/caption"
	"github.com/imgserve/imgserve/models/matting"
)

// TestMain lets a test run the real main in a child process of this test
// binary: ONNX Runtime loads once per process, and a server runs until a
// signal stops it.
func TestMain(m *testing.M) {
	if os.Getenv("IMGSERVE_TEST_RUN_MAIN") == "1" {
		main()
	}
	os.Exit(m.Run())
}

// --device cuda without the CUDA build, whatever the host, exits at start-up
// with one line per missing piece, each saying how to get it.
func TestDeviceCUDAWithoutTheCUDABuildExits(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	code := run([]string{"--device", "cuda", "--ort-cuda-lib", filepath.Join(dir, "libonnxruntime.so"), "--addr", "127.0.0.1:0"}, &out)
	msg := out.String()
	t.Log(msg)
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	for _, want := range []string{
		"imgserve: --device cuda:0: the CUDA execution provider cannot run here:\n",
		"  - the CUDA build of ONNX Runtime is not in " + dir + " (missing libonnxruntime.so, libonnxruntime_providers_shared.so, libonnxruntime_providers_cuda.so); fetch it with: scripts/fetch-models.sh --gpu\n",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if strings.Contains(msg, "imgserve listening") {
		t.Error("the server started listening before the check")
	}
}

// --device auto on a host that cannot run CUDA serves on the CPU build and
// says why, in the log, before it listens.
func TestDeviceAutoFallsBackToCPU(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // only a guard against a hang
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "--device", "auto", "--addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0",
		"--ort-cuda-lib", filepath.Join(t.TempDir(), "libonnxruntime.so"), "--models-dir", t.TempDir())
	home, err := filepath.Abs(paths.RepoHome())
	if err != nil {
		t.Fatal(err)
	}
	cmd.Env = append(os.Environ(), "IMGSERVE_TEST_RUN_MAIN=1", "IMGSERVE_HOME="+home)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()

	var log strings.Builder
	lines := bufio.NewScanner(stderr)
	listening := regexp.MustCompile(`msg="imgserve listening" addr=(\S+) device=(\S+)`)
	var addr, device string
	for addr == "" && lines.Scan() {
		log.WriteString(lines.Text() + "\n")
		if m := listening.FindStringSubmatch(lines.Text()); m != nil {
			addr, device = m[1], m[2]
		}
	}
	if addr == "" {
		t.Fatalf("the server never listened:\n%s", log.String())
	}
	go io.Copy(io.Discard, stderr) // what follows start-up is not checked
	if device != "cpu" {
		t.Errorf("listening on device %q, want cpu", device)
	}
	for _, want := range []string{`level=WARN msg="no usable GPU: serving on the CPU" device=auto`, "the CUDA build of ONNX Runtime is not in", "scripts/fetch-models.sh --gpu"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, log.String())
		}
	}
	resp, err := http.Get("http://" + addr + "/v2/health/live")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("live: %d", resp.StatusCode)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Errorf("server exited with %v after SIGTERM", err)
	}
}

// The embedded defaults raise batching on a GPU for every model that
// batches through the scheduler (the caption decoder's steps are batched by
// the caption pipeline, which has its own GPU setting; SAM's tensors have
// no batch dimension).
func TestDefaultsRaiseBatchingOnGPU(t *testing.T) {
	cfg, err := models.DefaultConfig()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range cfg.Models {
		if m.Task == matting.TaskSAM || m.Task == matting.TaskSAMDecoder {
			if m.GPUBatching != nil {
				t.Errorf("%s: SAM has no batch dimension, but gpu_batching is set", m.Name)
			}
			continue
		}
		if m.Task == caption.TaskDecoder {
			if m.Options["gpu_decode_batch_size"] == "" {
				t.Errorf("%s: no gpu_decode_batch_size", m.Name)
			}
			continue
		}
		cpu, gpu := m.BatchingFor(inference.Device{}), m.BatchingFor(inference.Device{CUDA: true})
		if m.GPUBatching == nil || gpu.MaxBatchSize <= cpu.MaxBatchSize || gpu.MaxBatchSize < 8 ||
			!slices.Contains(gpu.BatchBuckets, gpu.MaxBatchSize) || len(gpu.PreferredBatchSizes) == 0 {
			t.Errorf("%s: GPU batching %+v, CPU %+v", m.Name, gpu, cpu)
		}
	}
}
