package testmodels

import (
	"bytes"
	"fmt"
	"math"
	"math/rand"
	"os"
	"slices"
	"testing"
	"time"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/imgserve/imgserve/internal/paths"
)

// The tests run every model with the real ONNX Runtime and check the
// semantics documented in README.md. The shared library is taken from
// $IMGSERVE_ORT_LIB, else <repo>/.imgserve/lib/libonnxruntime.so.1.
func TestMain(m *testing.M) {
	lib := paths.TestORTLib()
	if _, err := os.Stat(lib); err != nil {
		fmt.Fprintf(os.Stderr, "testmodels: ONNX Runtime shared library not found: %v\n"+
			"Fetch it into <repo>/.imgserve/lib or set IMGSERVE_ORT_LIB to its path.\n", err)
		os.Exit(1)
	}
	ort.SetSharedLibraryPath(lib)
	if err := ort.InitializeEnvironment(); err != nil {
		fmt.Fprintf(os.Stderr, "testmodels: initializing ONNX Runtime from %s: %v\n", lib, err)
		os.Exit(1)
	}
	code := m.Run()
	_ = ort.DestroyEnvironment()
	os.Exit(code)
}

// ---------------------------------------------------------------------------
// helpers

func session(t testing.TB, model string, in, out []string) *ort.DynamicAdvancedSession {
	t.Helper()
	opts, err := ort.NewSessionOptions()
	if err != nil {
		t.Fatal(err)
	}
	defer opts.Destroy()
	if err := opts.SetIntraOpNumThreads(1); err != nil {
		t.Fatal(err)
	}
	if err := opts.SetInterOpNumThreads(1); err != nil {
		t.Fatal(err)
	}
	s, err := ort.NewDynamicAdvancedSession(Path(model), in, out, opts)
	if err != nil {
		t.Fatalf("%s: %v", model, err)
	}
	t.Cleanup(func() { _ = s.Destroy() })
	return s
}

// run runs s; nil entries of outputs are allocated by ORT. All outputs are
// destroyed at the end of the test.
func run(t testing.TB, s *ort.DynamicAdvancedSession, inputs []ort.Value, outputs []ort.Value) []ort.Value {
	t.Helper()
	if err := s.Run(inputs, outputs); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, o := range outputs {
			if o != nil {
				_ = o.Destroy()
			}
		}
	})
	return outputs
}

func tensor[T ort.TensorData](t testing.TB, data []T, dims ...int64) *ort.Tensor[T] {
	t.Helper()
	v, err := ort.NewTensor(ort.NewShape(dims...), data)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = v.Destroy() })
	return v
}

func data[T ort.TensorData](t testing.TB, v ort.Value) []T {
	t.Helper()
	tt, ok := v.(*ort.Tensor[T])
	if !ok {
		t.Fatalf("output is %T, want *Tensor[%T]", v, *new(T))
	}
	return tt.GetData()
}

func checkShape(t testing.TB, v ort.Value, want ...int64) {
	t.Helper()
	if got := v.GetShape(); !slices.Equal([]int64(got), want) {
		t.Fatalf("shape %v, want %v", got, want)
	}
}

func near(a, b, tol float32) bool { return float32(math.Abs(float64(a-b))) <= tol }

func cosine(a, b []float32) float64 {
	var ab, aa, bb float64
	for i := range a {
		ab += float64(a[i]) * float64(b[i])
		aa += float64(a[i]) * float64(a[i])
		bb += float64(b[i]) * float64(b[i])
	}
	return ab / math.Sqrt(aa*bb)
}

// f16 converts a float32 that is exactly representable as a normal float16.
func f16(f float32) uint16 {
	b := math.Float32bits(f)
	if f == 0 {
		return uint16(b >> 16)
	}
	sign := uint16(b>>16) & 0x8000
	exp := int((b>>23)&0xff) - 127 + 15
	return sign | uint16(exp)<<10 | uint16((b>>13)&0x3ff)
}

func f16ToF32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	man := uint32(h) & 0x3ff
	switch {
	case exp == 0 && man == 0:
		return math.Float32frombits(sign)
	case exp == 0: // subnormal
		return float32(math.Ldexp(float64(man), -24)) * float32(1-2*int(sign>>31))
	case exp == 31:
		return math.Float32frombits(sign | 0x7f800000 | man<<13)
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | man<<13)
}

// ---------------------------------------------------------------------------
// package API

func TestBytesAndPath(t *testing.T) {
	names := Names()
	if len(names) != 34 {
		t.Fatalf("got %d models: %v", len(names), names)
	}
	for _, n := range names {
		b := Bytes(n)
		onDisk, err := os.ReadFile(Path(n))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, onDisk) {
			t.Errorf("%s: embedded bytes differ from %s", n, Path(n))
		}
		if len(b) > 400<<10 {
			t.Errorf("%s: %d bytes, too large", n, len(b))
		}
	}
	for _, f := range []func(string){func(s string) { Bytes(s) }, func(s string) { Path(s) }} {
		func() {
			defer func() {
				if recover() == nil {
					t.Error("no panic for unknown model")
				}
			}()
			f("nope.onnx")
		}()
	}
}

// ---------------------------------------------------------------------------
// signatures

type sig struct {
	name string
	dt   ort.TensorElementDataType
	dims []int64 // -1 = dynamic
}

func decoderSig(layers, heads, headSize int64) (in, out []sig) {
	in = []sig{
		{"input_ids", ort.TensorElementDataTypeInt64, []int64{-1, -1}},
		{"encoder_hidden_states", ort.TensorElementDataTypeFloat, []int64{-1, -1, 768}},
	}
	out = []sig{{"logits", ort.TensorElementDataTypeFloat, []int64{-1, -1, 50257}}}
	for i := range layers {
		for _, kv := range []string{"key", "value"} {
			in = append(in, sig{fmt.Sprintf("past_key_values.%d.%s", i, kv), ort.TensorElementDataTypeFloat, []int64{-1, heads, -1, headSize}})
			out = append(out, sig{fmt.Sprintf("present.%d.%s", i, kv), ort.TensorElementDataTypeFloat, []int64{-1, heads, -1, headSize}})
		}
	}
	in = append(in, sig{"use_cache_branch", ort.TensorElementDataTypeBool, []int64{1}})
	return in, out
}

func TestSignatures(t *testing.T) {
	const (
		f32  = ort.TensorElementDataTypeFloat
		f16t = ort.TensorElementDataTypeFloat16
		i64  = ort.TensorElementDataTypeInt64
		i32  = ort.TensorElementDataTypeInt32
		u8   = ort.TensorElementDataTypeUint8
		bl   = ort.TensorElementDataTypeBool
	)
	decIn, decOut := decoderSig(12, 12, 64)
	dec2In, dec2Out := decoderSig(2, 4, 16)
	want := map[string][2][]sig{
		AffineF32:      {{{"x", f32, []int64{-1, 4}}}, {{"y", f32, []int64{-1, 4}}, {"sum", f32, []int64{-1, 1}}}},
		AffineDyn:      {{{"x", f32, []int64{-1, -1}}}, {{"y", f32, []int64{-1, -1}}}},
		SlowAffine:     {{{"x", f32, []int64{-1, 4}}}, {{"y", f32, []int64{-1, 4}}, {"sum", f32, []int64{-1, 1}}}},
		Fixed1Affine:   {{{"x", f32, []int64{1, 4}}}, {{"y", f32, []int64{1, 4}}, {"sum", f32, []int64{1, 1}}}},
		Fixed1Reshape:  {{{"x", f32, []int64{1, 4}}}, {{"y", f32, []int64{1, 4}}}},
		ExternalAffine: {{{"x", f32, []int64{-1, 4}}}, {{"y", f32, []int64{-1, 4}}}},
		ResizeSizes:    {{{"x", f32, []int64{1, 16, 4, 6}}}, {{"up", f32, []int64{1, 16, 8, 18}}, {"up_odd", f32, []int64{1, 16, 5, 7}}}},
		ResizeSizesDyn: {{{"x", f32, []int64{-1, 16, -1, -1}}}, {{"up", f32, []int64{-1, 16, -1, -1}}, {"up_odd", f32, []int64{-1, 16, -1, -1}}}},
		Dtypes: {
			{{"f32", f32, []int64{-1, 3}}, {"f16", f16t, []int64{-1, 3}}, {"i64", i64, []int64{-1, 3}}, {"i32", i32, []int64{-1, 3}}, {"u8", u8, []int64{-1, 3}}, {"b", bl, []int64{-1, 3}}},
			{{"f32_out", f32, []int64{-1, 3}}, {"f16_out", f16t, []int64{-1, 3}}, {"i64_out", i64, []int64{-1, 3}}, {"i32_out", i32, []int64{-1, 3}}, {"u8_out", u8, []int64{-1, 3}}, {"b_out", bl, []int64{-1, 3}}},
		},
		LamaSynth:     {{{"image", f32, []int64{1, 3, 512, 512}}, {"mask", f32, []int64{1, 1, 512, 512}}}, {{"output", f32, []int64{1, 3, 512, 512}}}},
		LamaSynthUnit: {{{"image", f32, []int64{1, 3, 512, 512}}, {"mask", f32, []int64{1, 1, 512, 512}}}, {{"output", f32, []int64{1, 3, 512, 512}}}},
		LamaSynthDyn:  {{{"image", f32, []int64{-1, 3, 512, 512}}, {"mask", f32, []int64{-1, 1, 512, 512}}}, {{"output", f32, []int64{-1, 3, 512, 512}}}},
		ClipVisionSynth: {{{"pixel_values", f32, []int64{-1, 3, 224, 224}}},
			{{"image_embeds", f32, []int64{-1, 512}}, {"last_hidden_state", f32, []int64{-1, 50, 768}}}},
		ClipTextSynth: {{{"input_ids", i64, []int64{-1, -1}}, {"attention_mask", i64, []int64{-1, -1}}},
			{{"text_embeds", f32, []int64{-1, 512}}, {"last_hidden_state", f32, []int64{-1, -1, 512}}}},
		ClipTextSynthNoAttn: {{{"input_ids", i64, []int64{-1, -1}}},
			{{"text_embeds", f32, []int64{-1, 512}}, {"last_hidden_state", f32, []int64{-1, -1, 512}}}},
		CaptionEncoderSynth:       {{{"pixel_values", f32, []int64{-1, 3, 224, 224}}}, {{"last_hidden_state", f32, []int64{-1, 197, 768}}}},
		CaptionDecoderSynth:       {decIn, decOut},
		CaptionDecoderSynth2Layer: {dec2In, dec2Out},
		BiRefNetSynth:             {{{"input_image", f32, []int64{1, 3, 1024, 1024}}}, {{"output_image", f32, []int64{1, 1, 1024, 1024}}}},
		ISNetAnimeSynth:           {{{"img", f32, []int64{1, 3, 1024, 1024}}}, {{"mask", f32, []int64{1, 1, 1024, 1024}}}},
		BriaRMBGSynth:             {{{"pixel_values", f32, []int64{1, 3, 1024, 1024}}}, {{"alphas", f32, []int64{1, 1, 1024, 1024}}}},
		BEN2Synth:                 {{{"input", f32, []int64{1, 3, 1024, 1024}}}, {{"output", f32, []int64{1, 1, 1024, 1024}}}},
		ClothSegSynth: {{{"input.1", f32, []int64{1, 3, 768, 768}}}, func() (o []sig) {
			for i := range 7 {
				o = append(o, sig{fmt.Sprintf("d%d", i), f32, []int64{1, 4, 768, 768}})
			}
			return o
		}()},
		SAMEncoderSynth: {{{"input_image", f32, []int64{-1, -1, 3}}}, {{"image_embeddings", f32, []int64{1, 256, 64, 64}}}},
		SAMDecoderSynth: {
			{{"image_embeddings", f32, []int64{1, 256, 64, 64}}, {"point_coords", f32, []int64{1, -1, 2}}, {"point_labels", f32, []int64{1, -1}},
				{"mask_input", f32, []int64{1, 1, 256, 256}}, {"has_mask_input", f32, []int64{1}}, {"orig_im_size", f32, []int64{2}}},
			{{"masks", f32, []int64{1, 1, -1, -1}}, {"iou_predictions", f32, []int64{1, 1}}, {"low_res_masks", f32, []int64{1, 1, 256, 256}}},
		},
		SDTextEncoderSynth: {{{"input_ids", i32, []int64{-1, -1}}},
			{{"last_hidden_state", f32, []int64{-1, -1, 1024}}, {"pooler_output", f32, []int64{-1, 1024}}}},
		SDTextEncoderSynthFP16: {{{"input_ids", i64, []int64{-1, -1}}},
			{{"last_hidden_state", f16t, []int64{-1, -1, 1024}}, {"pooler_output", f16t, []int64{-1, 1024}}}},
		SDUNetSynth: {{{"sample", f32, []int64{-1, 4, -1, -1}}, {"timestep", i64, []int64{1}}, {"encoder_hidden_states", f32, []int64{-1, -1, 1024}}},
			{{"out_sample", f32, []int64{-1, 4, -1, -1}}}},
		SDUNetSynthFP16: {{{"sample", f16t, []int64{-1, 4, -1, -1}}, {"timestep", f32, []int64{}}, {"encoder_hidden_states", f16t, []int64{-1, -1, 1024}}},
			{{"out_sample", f16t, []int64{-1, 4, -1, -1}}}},
		SDVAEDecoderSynth:     {{{"latent_sample", f32, []int64{-1, 4, -1, -1}}}, {{"sample", f32, []int64{-1, 3, -1, -1}}}},
		SDVAEDecoderSynthFP16: {{{"latent_sample", f16t, []int64{-1, 4, -1, -1}}}, {{"sample", f16t, []int64{-1, 3, -1, -1}}}},
		SDVAEEncoderSynth:     {{{"sample", f32, []int64{-1, 3, -1, -1}}}, {{"latent_parameters", f32, []int64{-1, 8, -1, -1}}}},
		SDVAEEncoderSynthFP16: {{{"sample", f16t, []int64{-1, 3, -1, -1}}}, {{"latent_sample", f16t, []int64{-1, 4, -1, -1}}}},
		SDSafetyCheckerSynth: {{{"clip_input", f32, []int64{-1, -1, -1, -1}}, {"images", f32, []int64{-1, -1, -1, -1}}},
			{{"out_images", f32, []int64{-1, -1, -1, -1}}, {"has_nsfw_concepts", bl, []int64{-1}}}},
	}
	if len(want) != len(Names()) {
		t.Fatalf("signature table has %d models, package has %d", len(want), len(Names()))
	}
	for name, w := range want {
		ins, outs, err := ort.GetInputOutputInfo(Path(name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for k, got := range [][]ort.InputOutputInfo{ins, outs} {
			if len(got) != len(w[k]) {
				t.Errorf("%s: %d entries, want %d: %v", name, len(got), len(w[k]), got)
				continue
			}
			for i, g := range got {
				e := w[k][i]
				if g.Name != e.name || g.DataType != e.dt || !slices.Equal([]int64(g.Dimensions), e.dims) {
					t.Errorf("%s: got %s %v %v, want %s %v %v", name, g.Name, g.DataType, g.Dimensions, e.name, e.dt, e.dims)
				}
			}
		}
	}
}

// ---------------------------------------------------------------------------
// foundation models

func checkAffine(t *testing.T, model string, batch int64) {
	s := session(t, model, []string{"x"}, []string{"y", "sum"})
	rng := rand.New(rand.NewSource(1))
	x := make([]float32, batch*4)
	for i := range x {
		x[i] = float32(rng.Intn(2001)-1000) / 8
	}
	out := run(t, s, []ort.Value{tensor(t, x, batch, 4)}, make([]ort.Value, 2))
	checkShape(t, out[0], batch, 4)
	checkShape(t, out[1], batch, 1)
	y, sum := data[float32](t, out[0]), data[float32](t, out[1])
	for r := range batch {
		var want float32
		for c := range int64(4) {
			v := x[r*4+c]
			want += v
			if y[r*4+c] != v*2+1 {
				t.Fatalf("%s: y[%d,%d]=%v want %v", model, r, c, y[r*4+c], v*2+1)
			}
		}
		if !near(sum[r], want, 1e-3) {
			t.Fatalf("%s: sum[%d]=%v want %v", model, r, sum[r], want)
		}
	}
}

func TestAffine(t *testing.T) {
	checkAffine(t, AffineF32, 1)
	checkAffine(t, AffineF32, 5)
	checkAffine(t, Fixed1Affine, 1)
	checkAffine(t, SlowAffine, 3)
}

func TestSlowAffineTiming(t *testing.T) {
	s := session(t, SlowAffine, []string{"x"}, []string{"y", "sum"})
	for _, batch := range []int64{1, 4} {
		x := tensor(t, make([]float32, batch*4), batch, 4)
		run(t, s, []ort.Value{x}, make([]ort.Value, 2)) // warm up
		const n = 5
		start := time.Now()
		for range n {
			run(t, s, []ort.Value{x}, make([]ort.Value, 2))
		}
		t.Logf("slow_affine batch %d: %v per run (1 thread)", batch, time.Since(start)/n)
	}
}

func TestFixed1Reshape(t *testing.T) {
	s := session(t, Fixed1Reshape, []string{"x"}, []string{"y"})
	x := []float32{1, 2, 3, 4}
	out := run(t, s, []ort.Value{tensor(t, x, 1, 4)}, make([]ort.Value, 1))
	if got, want := data[float32](t, out[0]), []float32{2, 4, 3, 5}; !slices.Equal(got, want) {
		t.Fatalf("y=%v want %v", got, want)
	}
	if err := s.Run([]ort.Value{tensor(t, make([]float32, 8), 2, 4)}, make([]ort.Value, 1)); err == nil {
		t.Fatal("batch 2 accepted by a fixed-batch model")
	}
}

func TestDtypes(t *testing.T) {
	s := session(t, Dtypes,
		[]string{"f32", "f16", "i64", "i32", "u8", "b"},
		[]string{"f32_out", "f16_out", "i64_out", "i32_out", "u8_out", "b_out"})
	f32 := []float32{0, 1.5, -2, 1e6, -0.25, 3}
	f16v := []float32{0.5, -1.25, 3, 1000, -0.125, 7}
	f16b := make([]byte, 0, 12)
	for _, v := range f16v {
		h := f16(v)
		f16b = append(f16b, byte(h), byte(h>>8))
	}
	f16In, err := ort.NewCustomDataTensor(ort.NewShape(2, 3), f16b, ort.TensorElementDataTypeFloat16)
	if err != nil {
		t.Fatal(err)
	}
	defer f16In.Destroy()
	// onnxruntime_go v1.27.0 mis-sizes ORT-allocated float16 outputs (it
	// copies one byte per element), so pre-allocate that output.
	f16Out, err := ort.NewCustomDataTensor(ort.NewShape(2, 3), make([]byte, 12), ort.TensorElementDataTypeFloat16)
	if err != nil {
		t.Fatal(err)
	}
	defer f16Out.Destroy()
	i64 := []int64{0, -7, 1 << 40, 5, math.MaxInt64 - 7, -1}
	i32 := []int32{0, 3, -5, 1 << 30, math.MinInt32 + 3, 2}
	u8 := []uint8{0, 7, 254, 100, 1, 255} // 255+1 wraps to 0
	b := []bool{true, false, true, false, false, true}
	out := run(t, s, []ort.Value{
		tensor(t, f32, 2, 3), f16In, tensor(t, i64, 2, 3), tensor(t, i32, 2, 3), tensor(t, u8, 2, 3), tensor(t, b, 2, 3),
	}, []ort.Value{nil, f16Out, nil, nil, nil, nil})
	for i := range 6 {
		checkShape(t, out[i], 2, 3)
		if got, want := data[float32](t, out[0])[i], f32[i]+1; got != want {
			t.Errorf("f32_out[%d]=%v want %v", i, got, want)
		}
		h := uint16(f16Out.GetData()[2*i]) | uint16(f16Out.GetData()[2*i+1])<<8
		if got, want := f16ToF32(h), f16v[i]*2; got != want {
			t.Errorf("f16_out[%d]=%v want %v", i, got, want)
		}
		if got, want := data[int64](t, out[2])[i], i64[i]+7; got != want {
			t.Errorf("i64_out[%d]=%v want %v", i, got, want)
		}
		if got, want := data[int32](t, out[3])[i], i32[i]-3; got != want {
			t.Errorf("i32_out[%d]=%v want %v", i, got, want)
		}
		if got, want := data[uint8](t, out[4])[i], u8[i]+1; got != want {
			t.Errorf("u8_out[%d]=%v want %v", i, got, want)
		}
		if got, want := data[bool](t, out[5])[i], !b[i]; got != want {
			t.Errorf("b_out[%d]=%v want %v", i, got, want)
		}
	}
}

// ---------------------------------------------------------------------------
// LaMa

func TestLama(t *testing.T) {
	for _, tc := range []struct {
		model string
		batch int64
		scale float32
	}{{LamaSynth, 1, 255}, {LamaSynthDyn, 2, 255}, {LamaSynthDyn, 1, 255}, {LamaSynthUnit, 1, 1}} {
		t.Run(fmt.Sprintf("%s_b%d", tc.model, tc.batch), func(t *testing.T) {
			const hw = 512 * 512
			rng := rand.New(rand.NewSource(2))
			img := make([]float32, tc.batch*3*hw)
			for i := range img {
				img[i] = rng.Float32()
			}
			mask := make([]float32, tc.batch*hw)
			for i := range mask {
				switch {
				case i%7 == 0:
					mask[i] = 0.25 // soft mask values follow the same formula
				case (i/512)%512 > 200 && i%512 < 300:
					mask[i] = 1
				}
			}
			s := session(t, tc.model, []string{"image", "mask"}, []string{"output"})
			out := run(t, s, []ort.Value{tensor(t, img, tc.batch, 3, 512, 512), tensor(t, mask, tc.batch, 1, 512, 512)}, make([]ort.Value, 1))
			checkShape(t, out[0], tc.batch, 3, 512, 512)
			got := data[float32](t, out[0])
			for b := range tc.batch {
				for c := range int64(3) {
					for p := range int64(hw) {
						i := (b*3+c)*hw + p
						m, x := mask[b*hw+p], img[i]
						want := tc.scale * (x*(1-m) + (1-x)*m)
						if !near(got[i], want, 1e-5*tc.scale) {
							t.Fatalf("output[%d,%d,%d]=%v want %v (image %v mask %v)", b, c, p, got[i], want, x, m)
						}
					}
				}
			}
		})
	}
}

// ---------------------------------------------------------------------------
// CLIP

// pattern fills a [3,224,224] image in roughly [-2,2] from smooth functions.
func pattern(seed int64, shift int, noise float32) []float32 {
	rng := rand.New(rand.NewSource(seed))
	var fx, fy, ph [3]float64
	for c := range 3 {
		fx[c], fy[c], ph[c] = rng.Float64()*4+0.5, rng.Float64()*4+0.5, rng.Float64()*6
	}
	nrng := rand.New(rand.NewSource(seed + 1000))
	out := make([]float32, 3*224*224)
	for c := range 3 {
		for y := range 224 {
			for x := range 224 {
				u, v := float64(x+shift)/224, float64(y)/224
				out[(c*224+y)*224+x] = float32(1.5*math.Sin(2*math.Pi*fx[c]*u+ph[c])*math.Cos(2*math.Pi*fy[c]*v)) +
					noise*float32(nrng.NormFloat64())
			}
		}
	}
	return out
}

func TestClipVision(t *testing.T) {
	s := session(t, ClipVisionSynth, []string{"pixel_values"}, []string{"image_embeds", "last_hidden_state"})
	a, a2, b := pattern(1, 0, 0), pattern(1, 4, 0.05), pattern(2, 0, 0)
	pv := slices.Concat(a, a2, b)
	out := run(t, s, []ort.Value{tensor(t, pv, 3, 3, 224, 224)}, make([]ort.Value, 2))
	checkShape(t, out[0], 3, 512)
	checkShape(t, out[1], 3, 50, 768)
	e := data[float32](t, out[0])
	ea, ea2, eb := e[:512], e[512:1024], e[1024:]
	if c := cosine(ea, ea2); c < 0.95 {
		t.Errorf("similar images: cosine %v < 0.95", c)
	}
	if c := cosine(ea, eb); c > 0.8 {
		t.Errorf("different images: cosine %v > 0.8", c)
	}
	// Rows are independent of the batch.
	single := run(t, s, []ort.Value{tensor(t, b, 1, 3, 224, 224)}, make([]ort.Value, 2))
	for i, v := range data[float32](t, single[0]) {
		if !near(v, eb[i], 1e-4) {
			t.Fatalf("batch row differs from single run at %d: %v vs %v", i, v, eb[i])
		}
	}
	// last_hidden_state[b,p,:48] = 4x4 average grid, rest 0.
	lhs := data[float32](t, out[1])
	grid := avgGrid(b)
	for p := range 50 {
		row := lhs[(2*50+p)*768 : (2*50+p+1)*768]
		for k := range 768 {
			want := float32(0)
			if k < 48 {
				want = grid[k]
			}
			if !near(row[k], want, 1e-4) {
				t.Fatalf("last_hidden_state[2,%d,%d]=%v want %v", p, k, row[k], want)
			}
		}
	}
}

// avgGrid returns the 4x4 average pool (56x56 blocks) of a [3,224,224]
// image, flattened as c*16+i*4+j.
func avgGrid(img []float32) []float32 {
	g := make([]float32, 48)
	for c := range 3 {
		for i := range 4 {
			for j := range 4 {
				var s float64
				for y := i * 56; y < (i+1)*56; y++ {
					for x := j * 56; x < (j+1)*56; x++ {
						s += float64(img[(c*224+y)*224+x])
					}
				}
				g[c*16+i*4+j] = float32(s / (56 * 56))
			}
		}
	}
	return g
}

func channelMeans(img []float32) [3]float32 {
	var m [3]float32
	for c := range 3 {
		var s float64
		for _, v := range img[c*224*224 : (c+1)*224*224] {
			s += float64(v)
		}
		m[c] = float32(s / (224 * 224))
	}
	return m
}

func TestClipText(t *testing.T) {
	s := session(t, ClipTextSynth, []string{"input_ids", "attention_mask"}, []string{"text_embeds", "last_hidden_state"})
	sn := session(t, ClipTextSynthNoAttn, []string{"input_ids"}, []string{"text_embeds", "last_hidden_state"})
	embed := func(ids, mask []int64) (te, lhs []float32) {
		n := int64(len(ids))
		out := run(t, s, []ort.Value{tensor(t, ids, 1, n), tensor(t, mask, 1, n)}, make([]ort.Value, 2))
		checkShape(t, out[0], 1, 512)
		checkShape(t, out[1], 1, n, 512)
		return data[float32](t, out[0]), data[float32](t, out[1])
	}
	same := func(what string, a, b []float32) {
		t.Helper()
		for i := range a {
			if !near(a[i], b[i], 1e-3) {
				t.Fatalf("%s: differ at %d: %v vs %v", what, i, a[i], b[i])
			}
		}
	}
	ones := []int64{1, 1, 1, 1}
	cat, lhs := embed([]int64{49406, 320, 2368, 49407}, ones)
	// text_embeds = sum_t mask[t] * last_hidden_state[t]
	sum := make([]float32, 512)
	for tt := range 4 {
		for k := range 512 {
			sum[k] += lhs[tt*512+k]
		}
	}
	same("sum of last_hidden_state", cat, sum)
	padded, _ := embed([]int64{49406, 320, 2368, 49407, 49407, 0}, []int64{1, 1, 1, 1, 0, 0})
	same("masked padding", cat, padded)
	perm, _ := embed([]int64{2368, 49407, 320, 49406}, ones)
	same("bag of tokens", cat, perm)
	mod, _ := embed([]int64{49406 - 1021*3, 320 + 1021, 2368, 49407}, ones)
	same("ids mod 1021", cat, mod)
	dog, _ := embed([]int64{49406, 320, 1929, 49407}, ones)
	if c := cosine(cat, dog); c > 0.95 {
		t.Errorf("different texts: cosine %v", c)
	}
	out := run(t, sn, []ort.Value{tensor(t, []int64{49406, 320, 2368, 49407}, 1, 4)}, make([]ort.Value, 2))
	same("noattn", cat, data[float32](t, out[0]))
	// batch of 2 with T=4
	out = run(t, s, []ort.Value{
		tensor(t, []int64{49406, 320, 2368, 49407, 49406, 320, 1929, 49407}, 2, 4),
		tensor(t, []int64{1, 1, 1, 1, 1, 1, 1, 1}, 2, 4),
	}, make([]ort.Value, 2))
	te := data[float32](t, out[0])
	same("batch row 0", cat, te[:512])
	same("batch row 1", dog, te[512:])
}

// ---------------------------------------------------------------------------
// Captioning

func solid(r, g, b float32) []float32 {
	img := make([]float32, 3*224*224)
	for c, v := range []float32{r, g, b} {
		for i := range 224 * 224 {
			img[c*224*224+i] = v
		}
	}
	return img
}

// encode runs the caption encoder on the given [3,224,224] images.
func encode(t *testing.T, imgs ...[]float32) *ort.Tensor[float32] {
	s := session(t, CaptionEncoderSynth, []string{"pixel_values"}, []string{"last_hidden_state"})
	n := int64(len(imgs))
	out := run(t, s, []ort.Value{tensor(t, slices.Concat(imgs...), n, 3, 224, 224)}, make([]ort.Value, 1))
	checkShape(t, out[0], n, 197, 768)
	return out[0].(*ort.Tensor[float32])
}

func TestCaptionEncoder(t *testing.T) {
	imgs := [][]float32{pattern(3, 0, 0.1), solid(1, -1, -1), solid(-1, 1, -1)}
	ehs := encode(t, imgs...).GetData()
	for b, img := range imgs {
		m := channelMeans(img)
		want := make([]float32, 768)
		want[0] = 0.5*m[0] + 0.3*m[1] + 0.2*m[2]
		copy(want[1:4], m[:])
		copy(want[4:52], avgGrid(img))
		for p := range 197 {
			row := ehs[(b*197+p)*768 : (b*197+p+1)*768]
			for k := range 768 {
				if !near(row[k], want[k], 1e-4) {
					t.Fatalf("image %d: last_hidden_state[%d,%d]=%v want %v", b, p, k, row[k], want[k])
				}
			}
		}
	}
}

const (
	eos          = 50256
	vocab        = 50257
	topLogit     = 10
	secondLogit  = 5
	layerOffset  = 100000
	encoderWidth = 768
)

// imgCode is the decoder's per-sample image code, computed from
// encoder_hidden_states[b,0,0] exactly as the graph does (float32 arithmetic).
func imgCode(v float32) int64 {
	x := int64(math.Floor(float64(v*1000 + 0.5)))
	return ((x % 97) + 97) % 97
}

// refNext returns the top and second-best tokens at absolute position pos.
func refNext(img, pos, tok int64) (top, second int64) {
	next := 256 + ((img*31+pos*7+tok)%2000+2000)%2000
	if pos >= 3+img%5 {
		return eos, next
	}
	return next, next + 1
}

type decoder struct {
	t                       *testing.T
	s                       *ort.DynamicAdvancedSession
	layers, heads, headSize int64
	ehs                     *ort.Tensor[float32]
	batch                   int64
}

func newDecoder(t *testing.T, model string, layers, heads, headSize int64, ehs *ort.Tensor[float32]) *decoder {
	in, out := decoderSig(layers, heads, headSize)
	var inNames, outNames []string
	for _, s := range in {
		inNames = append(inNames, s.name)
	}
	for _, s := range out {
		outNames = append(outNames, s.name)
	}
	return &decoder{t: t, s: session(t, model, inNames, outNames), layers: layers, heads: heads,
		headSize: headSize, ehs: ehs, batch: ehs.GetShape()[0]}
}

// step runs the decoder; past == nil means an empty past (P=0).
func (d *decoder) step(ids []int64, past []ort.Value, useCache bool) (logits []float32, present []ort.Value) {
	t := d.t
	t.Helper()
	T := int64(len(ids)) / d.batch
	in := []ort.Value{tensor(t, ids, d.batch, T), d.ehs}
	if past == nil {
		empty := tensor(t, []float32{}, d.batch, d.heads, 0, d.headSize)
		for range 2 * d.layers {
			in = append(in, empty)
		}
	} else {
		in = append(in, past...)
	}
	in = append(in, tensor(t, []bool{useCache}, 1))
	out := run(t, d.s, in, make([]ort.Value, 1+2*d.layers))
	checkShape(t, out[0], d.batch, T, vocab)
	return data[float32](t, out[0]), out[1:]
}

func argmax(row []float32) int64 {
	best := 0
	for i, v := range row {
		if v > row[best] {
			best = i
		}
	}
	return int64(best)
}

func testDecoder(t *testing.T, model string, layers, heads, headSize int64) {
	// Solid red, green, blue, white, black (ViT normalisation: -1..1) and a
	// pattern; README.md documents the codes of the solid colours.
	imgs := [][]float32{solid(1, -1, -1), solid(-1, 1, -1), solid(-1, -1, 1), solid(1, 1, 1), solid(-1, -1, -1), pattern(7, 0, 0)}
	wantCodes := []int64{0, 85, 79, 30, 67}
	ehsT := encode(t, imgs...)
	ehs := ehsT.GetData()
	B := int64(len(imgs))
	codes := make([]int64, B)
	want := make([][]int64, B) // reference captions (without BOS/EOS)
	seen := map[int64]bool{}
	for b := range B {
		codes[b] = imgCode(ehs[b*197*encoderWidth])
		seen[codes[b]] = true
		tok := int64(eos)
		for pos := int64(0); ; pos++ {
			top, _ := refNext(codes[b], pos, tok)
			if top == eos {
				break
			}
			want[b] = append(want[b], top)
			tok = top
		}
		if n := int64(len(want[b])); n != 3+codes[b]%5 {
			t.Fatalf("reference caption length %d for img %d", n, codes[b])
		}
	}
	if len(seen) != int(B) {
		t.Fatalf("image codes not distinct: %v", codes)
	}
	if !slices.Equal(codes[:len(wantCodes)], wantCodes) {
		t.Fatalf("image codes %v, want %v for the solid colours", codes, wantCodes)
	}
	t.Logf("image codes %v, captions %v", codes, want)
	d := newDecoder(t, model, layers, heads, headSize, ehsT)

	// Cached greedy loop, one token per step (BOS = EOS id, as GPT-2).
	cached := make([][]int64, B)
	done := make([]bool, B)
	tokens := slices.Repeat([]int64{eos}, int(B))
	var past []ort.Value
	history := [][]int64{slices.Clone(tokens)}
	for step := int64(0); step < 12; step++ {
		logits, present := d.step(tokens, past, step > 0)
		for i, p := range present {
			checkShape(t, p, B, heads, step+1, headSize)
			// The newest cache entry encodes this step's token/position.
			v := data[float32](t, p)
			layer := float32(i / 2 * layerOffset)
			for b := range B {
				last := v[((b*heads+heads-1)*(step+1)+step)*headSize+headSize-1]
				wantV := layer + float32(step)
				if i%2 == 0 {
					wantV = layer + float32(tokens[b])
				}
				if last != wantV {
					t.Fatalf("step %d present[%d] sample %d: newest entry %v want %v", step, i, b, last, wantV)
				}
			}
		}
		past = present
		for b := range B {
			row := logits[b*vocab : (b+1)*vocab]
			top, second := refNext(codes[b], step, tokens[b])
			if row[top] != topLogit || row[second] != secondLogit {
				t.Fatalf("step %d sample %d: logits[%d]=%v logits[%d]=%v", step, b, top, row[top], second, row[second])
			}
			next := argmax(row)
			if next != top {
				t.Fatalf("step %d sample %d: argmax %d want %d", step, b, next, top)
			}
			if !done[b] {
				if next == eos {
					done[b] = true
				} else {
					cached[b] = append(cached[b], next)
				}
			}
			tokens[b] = next
		}
		history = append(history, slices.Clone(tokens))
		if !slices.Contains(done, false) {
			break
		}
	}
	for b := range B {
		if !slices.Equal(cached[b], want[b]) {
			t.Errorf("cached loop sample %d: %v want %v", b, cached[b], want[b])
		}
	}

	// Uncached: feed the whole history at once with an empty past; every
	// position must match the cached loop's logits (same rule).
	T := len(history) - 1
	ids := make([]int64, 0, int(B)*T)
	for b := range B {
		for s := range T {
			ids = append(ids, history[s][b])
		}
	}
	logits, present := d.step(ids, nil, false)
	for b := range B {
		for s := range T {
			row := logits[(int(b)*T+s)*vocab : (int(b)*T+s+1)*vocab]
			top, second := refNext(codes[b], int64(s), history[s][b])
			nonzero := 0
			for _, v := range row {
				if v != 0 {
					nonzero++
				}
			}
			if row[top] != topLogit || row[second] != secondLogit || nonzero != 2 {
				t.Fatalf("uncached sample %d pos %d: wrong logits", b, s)
			}
			if top != history[s+1][b] {
				t.Fatalf("uncached sample %d pos %d: top %d, cached loop chose %d", b, s, top, history[s+1][b])
			}
		}
	}
	for _, p := range present {
		checkShape(t, p, B, heads, int64(T), headSize)
	}

	// Present = Concat(past, new): run one more cached step and compare
	// the prefix with the previous cache.
	_, grown := d.step(tokens, past, true)
	for i := range grown {
		old, cur := data[float32](t, past[i]), data[float32](t, grown[i])
		P := past[i].GetShape()[2]
		for bh := range B * heads {
			oldRows := old[bh*P*headSize : (bh+1)*P*headSize]
			curRows := cur[bh*(P+1)*headSize : bh*(P+1)*headSize+P*headSize]
			if !slices.Equal(oldRows, curRows) {
				t.Fatalf("present[%d] does not start with the past", i)
			}
		}
	}

	// use_cache_branch=false ignores a non-empty past (P_eff = 0).
	l1, p1 := d.step(slices.Repeat([]int64{eos}, int(B)), past, false)
	l0, _ := d.step(slices.Repeat([]int64{eos}, int(B)), nil, false)
	if !slices.Equal(l1, l0) {
		t.Error("use_cache_branch=false: logits depend on the past")
	}
	checkShape(t, p1[0], B, heads, 1, headSize)
}

func TestCaptionDecoder(t *testing.T) {
	testDecoder(t, CaptionDecoderSynth, 12, 12, 64)
}

func TestCaptionDecoder2Layer(t *testing.T) {
	testDecoder(t, CaptionDecoderSynth2Layer, 2, 4, 16)
}

// ---------------------------------------------------------------------------
// rembg's model set

func TestSalientSynth(t *testing.T) {
	x := make([]float32, 3*1024*1024)
	rng := rand.New(rand.NewSource(3))
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	for _, m := range []struct {
		file, in, out string
		logits        bool
	}{
		{BiRefNetSynth, "input_image", "output_image", true},
		{ISNetAnimeSynth, "img", "mask", false},
		{BriaRMBGSynth, "pixel_values", "alphas", false},
		{BEN2Synth, "input", "output", false},
	} {
		s := session(t, m.file, []string{m.in}, []string{m.out})
		out := run(t, s, []ort.Value{tensor(t, x, 1, 3, 1024, 1024)}, make([]ort.Value, 1))
		checkShape(t, out[0], 1, 1, 1024, 1024)
		y := data[float32](t, out[0])
		for _, i := range []int{0, 777, 1024*1024 - 1} {
			d := 3 * (float64(x[i]) - float64(x[2*1024*1024+i]))
			if !m.logits {
				d = 1 / (1 + math.Exp(-d))
			}
			if !near(y[i], float32(d), 1e-4) {
				t.Errorf("%s[%d] = %v, want %v", m.file, i, y[i], d)
			}
		}
	}
}

func TestClothSegSynth(t *testing.T) {
	names := []string{"d0", "d1", "d2", "d3", "d4", "d5", "d6"}
	s := session(t, ClothSegSynth, []string{"input.1"}, names)
	const plane = 768 * 768
	x := make([]float32, 3*plane)
	for i := range x {
		x[i] = float32(i%97)/10 - 4
	}
	out := run(t, s, []ort.Value{tensor(t, x, 1, 3, 768, 768)}, make([]ort.Value, 7))
	for k := range 7 {
		checkShape(t, out[k], 1, 4, 768, 768)
	}
	d0, d3 := data[float32](t, out[0]), data[float32](t, out[3])
	for _, i := range []int{0, 5000, plane - 1} {
		want := []float32{0.5, x[i], x[plane+i], x[2*plane+i]}
		for c, v := range want {
			if !near(d0[c*plane+i], v, 1e-5) || !near(d3[c*plane+i], v/4, 1e-5) {
				t.Errorf("class %d at %d: d0 %v d3 %v, want %v and %v", c, i, d0[c*plane+i], d3[c*plane+i], v, v/4)
			}
		}
	}
}

func TestSAMSynth(t *testing.T) {
	enc := session(t, SAMEncoderSynth, []string{"input_image"}, []string{"image_embeddings"})
	img := make([]float32, 684*1024*3)
	for i := range img {
		img[i] = float32(i % 3 * 60) // channel means 0, 60, 120
	}
	e := run(t, enc, []ort.Value{tensor(t, img, 684, 1024, 3)}, make([]ort.Value, 1))
	checkShape(t, e[0], 1, 256, 64, 64)
	emb := data[float32](t, e[0])
	if !near(emb[5*64*64], 120.0/255, 1e-5) || !near(emb[0], 0, 1e-6) {
		t.Fatalf("embeddings: channel 5 %v, channel 0 %v; want 120/255 and 0", emb[5*64*64], emb[0])
	}
	dec := session(t, SAMDecoderSynth,
		[]string{"image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input", "orig_im_size"},
		[]string{"masks", "iou_predictions", "low_res_masks"})
	decode := func(coords, labels []float32, emb []float32) []float32 {
		n := int64(len(labels))
		out := run(t, dec, []ort.Value{
			tensor(t, emb, 1, 256, 64, 64), tensor(t, coords, 1, n, 2), tensor(t, labels, 1, n),
			tensor(t, make([]float32, 256*256), 1, 1, 256, 256), tensor(t, []float32{0}, 1), tensor(t, []float32{100, 200}, 2),
		}, make([]ort.Value, 3))
		checkShape(t, out[0], 1, 1, 100, 200)
		return data[float32](t, out[0])
	}
	m := decode([]float32{50, 40, 0, 0}, []float32{1, -1}, emb)
	if !(m[40*200+50] > 0 && m[40*200+89] > 0 && m[40*200+91] <= 0 && m[0] <= 0) {
		t.Errorf("point (50,40): mask at centre %v, 39 right %v, 41 right %v, corner %v", m[40*200+50], m[40*200+89], m[40*200+91], m[0])
	}
	m = decode([]float32{10, 20, 100, 90, 80, 80, 0, 0}, []float32{2, 3, 0, -1}, emb)
	if !(m[30*200+20] > 0 && m[50*200+120] <= 0 && m[80*200+80] <= 0) {
		t.Errorf("box (10,20)-(100,90) minus disc at (80,80): inside %v, outside %v, cut %v", m[30*200+20], m[50*200+120], m[80*200+80])
	}
	m = decode([]float32{50, 40, 0, 0}, []float32{1, -1}, make([]float32, 256*64*64))
	for i, v := range m {
		if v > 0 {
			t.Fatalf("zero embeddings: mask positive at %d", i)
		}
	}
}

// ---------------------------------------------------------------------------
// Stable Diffusion

// sdSigma999 is sqrt((1-ᾱ)/ᾱ) at timestep 999 of SD's beta schedule.
const sdSigma999 = 14.6146

// sdPrompt is a 77-token row: BOS, words, EOS, then pad.
func sdPrompt[T int32 | int64](pad T, words ...T) []T {
	ids := append(append([]T{49406}, words...), 49407)
	for len(ids) < 77 {
		ids = append(ids, pad)
	}
	return ids
}

func TestSDTextEncoder(t *testing.T) {
	s := session(t, SDTextEncoderSynth, []string{"input_ids"}, []string{"last_hidden_state", "pooler_output"})
	ids := append(sdPrompt[int32](0, 320, 2368), sdPrompt[int32](49407, 736, 736)...)
	out := run(t, s, []ort.Value{tensor(t, ids, 2, 77)}, []ort.Value{nil, nil})
	checkShape(t, out[0], 2, 77, 1024)
	h := data[float32](t, out[0])
	for r, want := range []float32{-1, 0} { // "a cat": no red; two "red" among 77: -1 + 2*38.5/77
		var sum float32
		for p := range 77 {
			sum += h[(r*77+p)*1024]
		}
		if !near(sum/77, want, 1e-5) {
			t.Errorf("row %d: mean of feature 0 = %v, want %v", r, sum/77, want)
		}
	}
	// Feature 3 tells padding apart: "!" (0) gives -0.25, EOS 49407 (mod 17 = 5) 5/34 - 0.25.
	if got := h[76*1024+3]; !near(got, -0.25, 1e-6) {
		t.Errorf("pad \"!\" feature 3 = %v", got)
	}
	if got := h[(77+76)*1024+3]; !near(got, 5.0/34-0.25, 1e-6) {
		t.Errorf("pad EOS feature 3 = %v", got)
	}
}

func TestSDUNetIsAPerfectDenoiser(t *testing.T) {
	enc := session(t, SDTextEncoderSynth, []string{"input_ids"}, []string{"last_hidden_state"})
	ehs := run(t, enc, []ort.Value{tensor(t, sdPrompt[int32](0, 736, 736), 1, 77)}, []ort.Value{nil})[0]
	u := session(t, SDUNetSynth, []string{"sample", "timestep", "encoder_hidden_states"}, []string{"out_sample"})
	sample := make([]float32, 4*8*8)
	for i := range sample {
		sample[i] = float32(math.Sin(float64(i))) * 0.8
	}
	out := run(t, u, []ort.Value{tensor(t, sample, 1, 4, 8, 8), tensor(t, []int64{999}, 1), ehs}, []ort.Value{nil})
	eps := data[float32](t, out[0])
	// c = [0, -1, -1, mean((id%17)/34 - 0.25)]: x - sigma*eps = 0.18215*(c + 0.5*tanh(sample)).
	sigma := float32(sdSigma999)
	scale := float32(math.Sqrt(float64(sigma*sigma + 1)))
	for i, s := range sample {
		x0 := s*scale - sigma*eps[i]
		if ch := i / 64; ch < 3 {
			want := 0.18215 * ([]float32{0, -1, -1}[ch] + 0.5*float32(math.Tanh(float64(s))))
			if !near(x0, want, 2e-3) {
				t.Fatalf("element %d: x0 %v, want %v", i, x0, want)
			}
		}
	}
}

func TestSDVAERoundTrip(t *testing.T) {
	e := session(t, SDVAEEncoderSynth, []string{"sample"}, []string{"latent_parameters"})
	d := session(t, SDVAEDecoderSynth, []string{"latent_sample"}, []string{"sample"})
	img := make([]float32, 3*16*24)
	for i := range img {
		img[i] = float32(i%7)/7 - 0.4
	}
	lp := run(t, e, []ort.Value{tensor(t, img, 1, 3, 16, 24)}, []ort.Value{nil})[0]
	checkShape(t, lp, 1, 8, 2, 3)
	mean := data[float32](t, lp)[:4*6]
	back := run(t, d, []ort.Value{tensor(t, mean, 1, 4, 2, 3)}, []ort.Value{nil})[0]
	checkShape(t, back, 1, 3, 16, 24)
	got := data[float32](t, back)
	for c := range 3 {
		for y := range 16 {
			for x := range 24 {
				var sum float32
				for dy := range 8 {
					for dx := range 8 {
						sum += img[c*384+(y/8*8+dy)*24+x/8*8+dx]
					}
				}
				if g := got[c*384+y*24+x]; !near(g, sum/64, 1e-4) {
					t.Fatalf("channel %d (%d,%d): %v, want the 8x8 mean %v", c, x, y, g, sum/64)
				}
			}
		}
	}
}

func TestSDSafetyChecker(t *testing.T) {
	s := session(t, SDSafetyCheckerSynth, []string{"clip_input", "images"}, []string{"out_images", "has_nsfw_concepts"})
	images := make([]float32, 2*16*16*3)
	for i := range images {
		images[i] = 0.3
	}
	for y := range 8 {
		for x := range 8 {
			images[(y*16+x)*3] = 0.9 // image 0: a red top-left corner
		}
	}
	out := run(t, s, []ort.Value{tensor(t, make([]float32, 2*3*224*224), 2, 3, 224, 224), tensor(t, images, 2, 16, 16, 3)}, []ort.Value{nil, nil})
	if got := data[bool](t, out[1]); !slices.Equal(got, []bool{true, false}) {
		t.Errorf("has_nsfw_concepts = %v", got)
	}
	oi := data[float32](t, out[0])
	if oi[0] != 0 || oi[16*16*3] != 0.3 {
		t.Errorf("out_images: flagged image not blacked out, or the other changed")
	}
}
