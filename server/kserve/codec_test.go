package kserve

import (
	"errors"
	"slices"
	"strconv"
	"testing"

	"github.com/imgserve/imgserve/inference"
)

var batchedX = inference.NewInputLimits([]inference.TensorInfo{{Name: "x", DType: inference.FP32, Shape: []int64{-1, 2}}}, 4, nil, 0)

func TestNestedAndFlatDataAgree(t *testing.T) {
	for _, data := range []string{`[1,2,3,4]`, `[[1,2],[3,4]]`, ` [ [1 , 2] ,[3,4] ] `} {
		body := `{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":` + data + `}]}`
		_, in, err := DecodeRequest([]byte(body), -1, batchedX, nil)
		if err != nil {
			t.Fatalf("%s: %v", data, err)
		}
		if got := inference.Values[float32](in[0]); !slices.Equal(got, []float32{1, 2, 3, 4}) {
			t.Fatalf("%s: %v", data, got)
		}
	}
}

func TestMalformedDataIsBadInput(t *testing.T) {
	for _, data := range []string{`[1,2,3]`, `[1,2,3,4,5]`, `[[1,2],[3,4]`, `[1,2]]`, `1`, `["1",2,3,4]`, `[1e999,2,3,4]`, `[]`} {
		body := `{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":` + data + `}]}`
		if _, _, err := DecodeRequest([]byte(body), -1, batchedX, nil); !errors.Is(err, ErrBadInput) {
			t.Errorf("%s: got %v, want ErrBadInput", data, err)
		}
	}
	body := `{"inputs":[{"name":"x","shape":[5,2],"datatype":"FP32","data":[1,2,3,4,5,6,7,8,9,10]}]}`
	if _, _, err := DecodeRequest([]byte(body), -1, batchedX, nil); !errors.Is(err, ErrBadInput) {
		t.Errorf("batch over the limit: %v", err)
	}
}

func TestIntegerRanges(t *testing.T) {
	s := []inference.TensorInfo{{Name: "u", DType: inference.UINT8, Shape: []int64{2}}}
	for data, ok := range map[string]bool{`[0,255]`: true, `[0,256]`: false, `[-1,0]`: false, `[1.5,0]`: false} {
		body := `{"inputs":[{"name":"u","shape":[2],"datatype":"UINT8","data":` + data + `}]}`
		_, _, err := DecodeRequest([]byte(body), -1, inference.NewInputLimits(s, 1, nil, 0), nil)
		if (err == nil) != ok {
			t.Errorf("%s: err %v", data, err)
		}
	}
}

func TestResponseRoundTrip(t *testing.T) {
	out := inference.NewTensor([]int64{1, 3}, []int32{-1, 0, 2147483647})
	body, n, err := EncodeResponse("m", &Request{ID: "7"}, []string{"y"}, []int{0}, []inference.Tensor{out})
	if err != nil || n != -1 {
		t.Fatal(err, n)
	}
	want := `{"model_name":"m","model_version":"1","id":"7","outputs":[{"name":"y","datatype":"INT32","shape":[1,3],"data":[-1,0,2147483647]}]}`
	if string(body) != want {
		t.Fatalf("got %s", body)
	}
	body, n, err = EncodeResponse("m", &Request{Parameters: Parameters{"binary_data_output": true}}, []string{"y"}, []int{0}, []inference.Tensor{out})
	if err != nil || n <= 0 || string(body[n:]) != string(out.Data) {
		t.Fatalf("binary: %v %d", err, n)
	}
	want = `{"model_name":"m","model_version":"1","outputs":[{"name":"y","datatype":"INT32","shape":[1,3],"parameters":{"binary_data_size":12}}]}`
	if string(body[:n]) != want {
		t.Fatalf("binary header %s", body[:n])
	}
}

func TestSelectOutputs(t *testing.T) {
	names := []string{"a", "b", "c"}
	if got, err := SelectOutputs(names, nil); err != nil || !slices.Equal(got, []int{0, 1, 2}) {
		t.Fatalf("all: %v %v", got, err)
	}
	if got, err := SelectOutputs(names, []string{"c", "a"}); err != nil || !slices.Equal(got, []int{2, 0}) {
		t.Fatalf("c, a: %v %v", got, err)
	}
	if _, err := SelectOutputs(names, []string{"z"}); !errors.Is(err, ErrBadInput) {
		t.Fatalf("unknown output: %v", err)
	}
}

// FuzzDecodeRequest: no body, however malformed, may panic the decoder.
// Run it with
//
//	go test ./server/kserve -run '^$' -fuzz 'FuzzDecodeRequest$' -fuzztime 60s
func FuzzDecodeRequest(f *testing.F) {
	f.Add([]byte(`{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[1,2]}]}`), -1)
	f.Add([]byte(`{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","parameters":{"binary_data_size":8}}]}12345678`), 87)
	f.Add([]byte(`{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[[1],[2]]}]}`), -1)
	f.Fuzz(func(t *testing.T, body []byte, headerLen int) {
		req, in, err := DecodeRequest(body, headerLen, batchedX, nil)
		if err != nil {
			return
		}
		if req == nil || len(in) != 1 || in[0].Validate() != nil {
			t.Fatalf("accepted an invalid request: %v", strconv.Quote(string(body)))
		}
	})
}

// dynamicSigs are signatures whose dimensions a client chooses: a
// sequence model bounded to 77 positions (CLIP's text tower, two inputs),
// a model dynamic in every dimension, and one batched with a fixed row.
var dynamicSigs = []inference.InputLimits{
	inference.NewInputLimits([]inference.TensorInfo{
		{Name: "input_ids", DType: inference.INT64, Shape: []int64{-1, -1}},
		{Name: "attention_mask", DType: inference.INT64, Shape: []int64{-1, -1}},
	}, 8, [][]int64{{0, 77}, {0, 77}}, 0),
	inference.NewInputLimits([]inference.TensorInfo{
		{Name: "x", DType: inference.FP32, Shape: []int64{-1, -1, -1}},
	}, 1, nil, 1<<20),
	inference.NewInputLimits([]inference.TensorInfo{
		{Name: "u", DType: inference.UINT8, Shape: []int64{-1, 3}},
		{Name: "h", DType: inference.FP16, Shape: []int64{-1, -1}},
	}, 16, nil, 4096),
}

// FuzzDecodeRequestDynamic: with dynamic dimensions the client declares
// the shape. Whatever it declares, the decoder refuses or returns tensors
// that fit the model's limits, allocates only for bytes present, and never
// panics. Run it with
//
//	go test ./server/kserve -run '^$' -fuzz FuzzDecodeRequestDynamic -fuzztime 60s
func FuzzDecodeRequestDynamic(f *testing.F) {
	f.Add(uint8(0), []byte(`{"inputs":[{"name":"input_ids","shape":[1,3],"datatype":"INT64","data":[1,2,3]},{"name":"attention_mask","shape":[1,3],"datatype":"INT64","data":[1,1,1]}]}`), -1)
	f.Add(uint8(0), []byte(`{"inputs":[{"name":"input_ids","shape":[8,1000000],"datatype":"INT64","data":[1]},{"name":"attention_mask","shape":[8,1],"datatype":"INT64","data":[1]}]}`), -1)
	f.Add(uint8(0), []byte(`{"inputs":[{"name":"input_ids","shape":[8,268435456],"datatype":"INT64","data":[1]}]}`), -1)
	f.Add(uint8(1), []byte(`{"inputs":[{"name":"x","shape":[2,9223372036854775807,1],"datatype":"FP32","data":[1]}]}`), -1)
	f.Add(uint8(1), []byte(`{"inputs":[{"name":"x","shape":[4,4611686018427387904,0],"datatype":"FP32","data":[]}]}`), -1)
	f.Add(uint8(1), []byte(`{"inputs":[{"name":"x","shape":[1,2,2],"datatype":"FP32","parameters":{"binary_data_size":16}}]}0123456789abcdef`), 94)
	f.Add(uint8(2), []byte(`{"inputs":[{"name":"u","shape":[2,3],"datatype":"UINT8","data":[1,2,3,4,5,6]},{"name":"h","shape":[2,1],"datatype":"FP16","data":[0.5,1]}]}`), -1)
	f.Fuzz(func(t *testing.T, which uint8, body []byte, headerLen int) {
		lim := dynamicSigs[int(which)%len(dynamicSigs)]
		var reserved int64
		_, in, err := DecodeRequest(body, headerLen, lim, func(n int64) error { reserved += n; return nil })
		if reserved > 4*int64(len(body))+8 {
			t.Fatalf("reserved %d bytes for a body of %d", reserved, len(body))
		}
		if err != nil {
			if !errors.Is(err, ErrBadInput) {
				t.Fatalf("untyped error: %v", err)
			}
			return
		}
		var total int64
		for i, x := range in {
			if err := x.Validate(); err != nil {
				t.Fatalf("input %d: %v", i, err)
			}
			n, err := lim.CheckShape(i, x.DType, x.Shape, total)
			if err != nil {
				t.Fatalf("accepted input %d outside the limits: %v", i, err)
			}
			total += n
		}
		if total > lim.MaxBytes || total > int64(len(body))*4 {
			t.Fatalf("accepted %d bytes of tensors from a body of %d (limit %d)", total, len(body), lim.MaxBytes)
		}
	})
}
