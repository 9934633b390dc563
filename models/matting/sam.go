package matting

import (
	"context"
	"fmt"
	"image"
	"time"

	"github.com/imgserve/imgserve/inference"
	"github.com/imgserve/imgserve/models"
	"github.com/imgserve/imgserve/preprocess"
)

// rembg's SAM session scales every image to fit a 684x1024 (h x w) frame,
// feeds the encoder raw 0-255 RGB floats in HWC layout (the export does
// SAM's own normalisation and padding), and tells the decoder that frame
// as the "original" size; the decoder's masks are then scaled back.
const (
	samFrameW = 1024
	samFrameH = 684
)

// The SAM decoder's inputs (SAM's ONNX export, which samexporter reuses).
const (
	samEmbeddings = "image_embeddings"
	samCoords     = "point_coords"
	samLabels     = "point_labels"
	samMaskInput  = "mask_input"
	samHasMask    = "has_mask_input"
	samOrigSize   = "orig_im_size"
)

var samDecoderInputs = []string{samEmbeddings, samCoords, samLabels, samMaskInput, samHasMask, samOrigSize}

// samDecoder finds the SAM encoder's decoder model.
func samDecoder(enc *models.Model, spec Spec, reg *models.Registry) (*models.Model, error) {
	name := enc.Config.Name
	if spec.Decoder == "" {
		return nil, fmt.Errorf("model %s: a SAM encoder names its decoder model in options.decoder", name)
	}
	d, ok := reg.Get(spec.Decoder)
	if !ok || d.Config.Task != TaskSAMDecoder {
		return nil, fmt.Errorf("model %s: options.decoder %q is not a configured %s model", name, spec.Decoder, TaskSAMDecoder)
	}
	if st := d.State(); st.Status != models.StatusReady {
		return nil, fmt.Errorf("%w: %s needs its decoder %s, which is %s: %s", models.ErrNotReady, name, d.Config.Name, st.Status, st.Reason)
	}
	for _, m := range []*models.Model{enc, d} {
		if m.State().Batching.MaxBatchSize > 1 {
			return nil, fmt.Errorf("model %s: SAM's tensors have no batch dimension to share; configure max_batch_size: 1", m.Config.Name)
		}
	}
	return d, nil
}

// samMasks is rembg's SAM session: encode the image scaled into the frame,
// decode the prompt, scale every returned mask back to the image (OpenCV
// bilinear warps, as rembg) and keep the union of where they are positive.
func (p *Pipeline) samMasks(ctx context.Context, img *image.NRGBA, ex Extras) ([]*image.Gray, Timings, error) {
	var t Timings
	name := p.model.Config.Name
	if ex.SAMModel != "" && ex.SAMModel != p.spec.Variant {
		return nil, t, fmt.Errorf("%w: sam_model %q: this server's %s is %s", ErrBadParameter, ex.SAMModel, name, p.spec.Variant)
	}
	if ex.SAMQuant != nil && *ex.SAMQuant != p.spec.Quantized {
		return nil, t, fmt.Errorf("%w: sam_quant %v: this server's %s has quantized=%v", ErrBadParameter, *ex.SAMQuant, name, p.spec.Quantized)
	}
	if len(ex.SAMPrompt) == 0 {
		return nil, t, fmt.Errorf("%w: %s needs a prompt: sam_prompt, e.g. [{\"type\": \"point\", \"data\": [x, y], \"label\": 1}]", ErrBadParameter, name)
	}
	start := time.Now()
	w, h := img.Rect.Dx(), img.Rect.Dy()
	s := min(float64(samFrameW)/float64(w), float64(samFrameH)/float64(h))
	rgb, err := preprocess.WarpAffineRGB(img, [6]float64{s, 0, 0, 0, s, 0}, samFrameW, samFrameH)
	if err != nil {
		return nil, t, err
	}
	frame := make([]float32, len(rgb))
	for i, v := range rgb {
		frame[i] = float32(v)
	}
	t.ResizePack = time.Since(start)

	start = time.Now()
	outs, err := p.model.Infer(ctx, []inference.Tensor{inference.NewTensor([]int64{samFrameH, samFrameW, 3}, frame)})
	if err != nil {
		return nil, t, err
	}
	inputs, err := p.samDecoderInputs(outs[0], ex.SAMPrompt, s)
	if err != nil {
		return nil, t, err
	}
	outs, err = p.decoder.Infer(ctx, inputs)
	if err != nil {
		return nil, t, err
	}
	t.Inference = time.Since(start)

	start = time.Now()
	masks := outs[0]
	if len(masks.Shape) != 4 || masks.Shape[0] < 1 || masks.DType != inference.FP32 {
		return nil, t, fmt.Errorf("model %s: masks %v %v, want FP32 [1,M,H,W]", p.decoder.Config.Name, masks.DType, masks.Shape)
	}
	mh, mw := int(masks.Shape[2]), int(masks.Shape[3])
	values := inference.Values[float32](masks)
	// np.linalg.inv of the scale matrix; warpAffine inverts it once more.
	inv := [6]float64{1 / s, 0, 0, 0, 1 / s, 0}
	union := image.NewGray(image.Rect(0, 0, w, h))
	for k := range int(masks.Shape[1]) {
		back, err := preprocess.WarpAffineFloat(values[k*mh*mw:(k+1)*mh*mw], mw, mh, inv, w, h)
		if err != nil {
			return nil, t, err
		}
		for i, v := range back {
			if v > 0 {
				union.Pix[i] = 255
			}
		}
	}
	t.MaskResize = time.Since(start)
	return []*image.Gray{union}, t, nil
}

// samDecoderInputs builds the decoder's inputs, in its own order, as rembg
// does: the prompt's points (a rectangle is two points labelled 2 and 3)
// plus SAM's padding point (0, 0) labelled -1, scaled into the frame; no
// previous mask; the frame as the original size.
func (p *Pipeline) samDecoderInputs(embeddings inference.Tensor, prompt []Mark, s float64) ([]inference.Tensor, error) {
	var coords, labels []float32
	point := func(x, y float64, label int) {
		// float32 from the prompt (apply_coords with a scale of exactly 1),
		// then times the scale in float64, then float32 again.
		coords = append(coords, float32(float64(float32(x))*s), float32(float64(float32(y))*s))
		labels = append(labels, float32(label))
	}
	for _, m := range prompt {
		switch m.Type {
		case "point":
			point(m.Data[0], m.Data[1], *m.Label)
		case "rectangle":
			point(m.Data[0], m.Data[1], 2)
			point(m.Data[2], m.Data[3], 3)
		}
	}
	point(0, 0, -1)
	n := int64(len(labels))
	maskShape := []int64{1, 1, 256, 256}
	by := map[string]inference.Tensor{
		samEmbeddings: embeddings,
		samCoords:     inference.NewTensor([]int64{1, n, 2}, coords),
		samLabels:     inference.NewTensor([]int64{1, n}, labels),
		samHasMask:    inference.NewTensor([]int64{1}, []float32{0}),
		samOrigSize:   inference.NewTensor([]int64{2}, []float32{samFrameH, samFrameW}),
	}
	st := p.decoder.State()
	for _, in := range st.Inputs {
		if in.Name == samMaskInput && len(in.Shape) == 4 {
			for d, v := range in.Shape {
				if v > 0 {
					maskShape[d] = v
				}
			}
		}
	}
	by[samMaskInput] = inference.NewTensor(maskShape, make([]float32, maskShape[0]*maskShape[1]*maskShape[2]*maskShape[3]))
	inputs := make([]inference.Tensor, len(st.Inputs))
	for i, in := range st.Inputs {
		t, ok := by[in.Name]
		if !ok {
			return nil, fmt.Errorf("model %s: unexpected input %s", p.decoder.Config.Name, in.Name)
		}
		inputs[i] = t
	}
	return inputs, nil
}
