//go:build !race

// Allocation counts differ under the race detector, so these tests build
// only without it; make test runs them in a second pass without -race.

package kserve

import (
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/imgserve/imgserve/inference"
)

// The KServe shape cases of issue 10: a request may make the decoder
// allocate at most twice what it brought (its body) and what it was
// admitted for (the tensor bytes it reserved), plus a small constant;
// never anything in proportion to a shape it merely declared.
func TestDecodeRequestAllocationsFollowTheBytesPresent(t *testing.T) {
	text := inference.NewInputLimits([]inference.TensorInfo{
		{Name: "input_ids", DType: inference.INT64, Shape: []int64{-1, -1}},
	}, 8, [][]int64{{0, 77}}, 0)
	wide := inference.NewInputLimits([]inference.TensorInfo{
		{Name: "x", DType: inference.FP32, Shape: []int64{-1, -1}},
	}, 4, nil, 0)
	ones := func(n int) string { return "[" + strings.TrimSuffix(strings.Repeat("1,", n), ",") + "]" }
	body := func(name, dtype string, shape []int64, data string) []byte {
		s, _ := json.Marshal(shape)
		return []byte(fmt.Sprintf(`{"inputs":[{"name":%q,"shape":%s,"datatype":%q,"data":%s}]}`, name, s, dtype, data))
	}
	for _, c := range []struct {
		name string
		lim  inference.InputLimits
		body []byte
		ok   bool
	}{
		{"[8,1000000] INT64, 16 MB of JSON", text, body("input_ids", "INT64", []int64{8, 1000000}, ones(8000000)), false},
		{"[8,2^28] INT64, data [1]", text, body("input_ids", "INT64", []int64{8, 1 << 28}, "[1]"), false},
		{"[2,2^63-1] FP32", wide, body("x", "FP32", []int64{2, 1<<63 - 1}, "[1]"), false},
		{"[4,2^62] FP32", wide, body("x", "FP32", []int64{4, 1 << 62}, "[1]"), false},
		{"[1,2^20] FP32, data [1]", wide, body("x", "FP32", []int64{1, 1 << 20}, "[1]"), false},
		{"[1,2^21] FP32, 2^21 given", wide, body("x", "FP32", []int64{1, 1 << 21}, ones(1<<21)), true},
		{"[8,77] INT64, all given", text, body("input_ids", "INT64", []int64{8, 77}, ones(8*77)), true},
	} {
		var reserved int64
		reserve := func(n int64) error { reserved += n; return nil }
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		_, _, err := DecodeRequest(c.body, -1, c.lim, reserve)
		runtime.ReadMemStats(&after)
		if (err == nil) != c.ok {
			t.Errorf("%s: err %v", c.name, err)
			continue
		}
		alloc := int64(after.TotalAlloc - before.TotalAlloc)
		bound := 2*(int64(len(c.body))+reserved) + 64<<10
		t.Logf("%s: body %d B, reserved %d B, allocated %d B", c.name, len(c.body), reserved, alloc)
		if alloc > bound {
			t.Errorf("%s: allocated %d bytes for a body of %d with %d reserved; bound %d", c.name, alloc, len(c.body), reserved, bound)
		}
	}
}
