package caption

import (
	"slices"
	"testing"

	"github.com/imgserve/imgserve/inference"
)

func TestDecodeBatchOnGPU(t *testing.T) {
	if got := decodeBatchKeys(inference.Device{}); !slices.Equal(got, []string{"decode_batch_size"}) {
		t.Errorf("CPU: %v", got)
	}
	if got := decodeBatchKeys(inference.Device{CUDA: true}); !slices.Equal(got, []string{"decode_batch_size", "gpu_decode_batch_size"}) {
		t.Errorf("GPU: %v", got)
	}
}
