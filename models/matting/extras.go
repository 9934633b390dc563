package matting

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
)

// Extras are rembg's per-request model parameters: the keys of its server's
// "extras" JSON that its sessions read at prediction time.
type Extras struct {
	// SAMPrompt is sam_prompt: points and rectangles for SAM.
	SAMPrompt []Mark
	// ClothCategory is cc or cloth_category for u2net_cloth_seg: "upper",
	// "lower" or "full"; empty for all three masks.
	ClothCategory string
	// SAMModel and SAMQuant are rembg's sam_model and sam_quant, which pick
	// the SAM export at session creation; here they must name the one
	// configured.
	SAMModel string
	SAMQuant *bool
	// PutAlpha is rembg's putalpha: the cutout keeps the image's colours
	// and takes the mask as its alpha, instead of scaling every channel by
	// the mask.
	PutAlpha bool
}

// Mark is one element of a SAM prompt, as rembg's schema has it:
// {"type": "point", "data": [x, y], "label": 1} (label 1 keeps, 0 removes)
// or {"type": "rectangle", "data": [x0, y0, x1, y1]}, in pixels of the
// (EXIF-oriented) input image. rembg ignores other types.
type Mark struct {
	Type  string    `json:"type"`
	Label *int      `json:"label"`
	Data  []float64 `json:"data"`
}

// maxMarks bounds a prompt; SAM's decoder is meant for a handful of clicks.
const maxMarks = 64

// ParseExtras reads rembg's extras: a JSON object whose keys rembg hands
// to the model session. Keys this server does not use are ignored, as
// rembg ignores those its session does not read; model_path, which makes
// rembg load a file named by the client, is refused.
func ParseExtras(data []byte) (Extras, error) {
	var ex Extras
	if len(bytes.TrimSpace(data)) == 0 {
		return ex, nil
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return ex, fmt.Errorf("%w: extras must be a JSON object: %v", ErrBadParameter, err)
	}
	if _, ok := raw["model_path"]; ok {
		return ex, fmt.Errorf("%w: extras model_path: imgserve never opens files named by a request; "+
			"put the model in the models folder and configure it by name", ErrBadParameter)
	}
	if p, ok := raw["sam_prompt"]; ok {
		prompt, err := ParseSAMPrompt(p)
		if err != nil {
			return ex, err
		}
		ex.SAMPrompt = prompt
	}
	for _, key := range []string{"cc", "cloth_category"} {
		if v, ok := raw[key]; ok && string(v) != "null" {
			var s string
			if err := json.Unmarshal(v, &s); err != nil {
				return ex, fmt.Errorf("%w: extras %s must be a string", ErrBadParameter, key)
			}
			if ex.ClothCategory == "" {
				ex.ClothCategory = s // rembg: kwargs.get("cc") or kwargs.get("cloth_category")
			}
		}
	}
	if v, ok := raw["putalpha"]; ok {
		if err := json.Unmarshal(v, &ex.PutAlpha); err != nil {
			return ex, fmt.Errorf("%w: extras putalpha must be true or false", ErrBadParameter)
		}
	}
	if v, ok := raw["sam_model"]; ok {
		if err := json.Unmarshal(v, &ex.SAMModel); err != nil {
			return ex, fmt.Errorf("%w: extras sam_model must be a string", ErrBadParameter)
		}
	}
	if v, ok := raw["sam_quant"]; ok {
		var q bool
		if err := json.Unmarshal(v, &q); err != nil {
			return ex, fmt.Errorf("%w: extras sam_quant must be true or false", ErrBadParameter)
		}
		ex.SAMQuant = &q
	}
	return ex, nil
}

// ParseSAMPrompt reads a SAM prompt: a JSON array of marks, checked as
// rembg's JSON schema checks it (type a string, label an integer, data an
// array of numbers), then for what its get_input_points needs: two numbers
// for a point, four for a rectangle, and at least one of them.
func ParseSAMPrompt(data []byte) ([]Mark, error) {
	var marks []Mark
	if err := json.Unmarshal(data, &marks); err != nil {
		return nil, fmt.Errorf("%w: sam_prompt must be an array of {\"type\", \"data\", \"label\"} objects: %v", ErrBadParameter, err)
	}
	if len(marks) > maxMarks {
		return nil, fmt.Errorf("%w: sam_prompt has %d marks, at most %d are allowed", ErrBadParameter, len(marks), maxMarks)
	}
	used := 0
	for i, m := range marks {
		for _, v := range m.Data {
			if math.IsNaN(v) || math.IsInf(v, 0) || math.Abs(v) > 1e6 {
				return nil, fmt.Errorf("%w: sam_prompt[%d]: coordinate %v out of range", ErrBadParameter, i, v)
			}
		}
		switch m.Type {
		case "point":
			if len(m.Data) != 2 || m.Label == nil {
				return nil, fmt.Errorf("%w: sam_prompt[%d]: a point needs \"data\": [x, y] and an integer \"label\" (1 keeps, 0 removes)", ErrBadParameter, i)
			}
			used++
		case "rectangle":
			if len(m.Data) != 4 {
				return nil, fmt.Errorf("%w: sam_prompt[%d]: a rectangle needs \"data\": [x0, y0, x1, y1]", ErrBadParameter, i)
			}
			used++
		case "":
			return nil, fmt.Errorf("%w: sam_prompt[%d] has no \"type\"", ErrBadParameter, i)
		}
	}
	if used == 0 {
		return nil, fmt.Errorf("%w: sam_prompt needs at least one point or rectangle", ErrBadParameter)
	}
	return marks, nil
}
