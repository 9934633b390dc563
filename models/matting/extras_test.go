package matting

import (
	"errors"
	"math"
	"testing"
)

func sin(x float64) float64 { return math.Sin(x) }

func TestParseExtras(t *testing.T) {
	ex, err := ParseExtras([]byte(`{"sam_prompt": [{"type": "point", "data": [724, 740], "label": 1}, {"type": "rectangle", "data": [1, 2, 3, 4]}], "cc": "upper", "other": 1}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(ex.SAMPrompt) != 2 || ex.SAMPrompt[0].Data[0] != 724 || *ex.SAMPrompt[0].Label != 1 || ex.ClothCategory != "upper" {
		t.Errorf("parsed %+v", ex)
	}
	if ex, _ := ParseExtras([]byte(`{"putalpha": true}`)); !ex.PutAlpha {
		t.Errorf("putalpha: %+v", ex)
	}
	if ex, _ := ParseExtras([]byte(`{"cloth_category": "full"}`)); ex.ClothCategory != "full" {
		t.Errorf("cloth_category: %+v", ex)
	}
	if ex, err := ParseExtras(nil); err != nil || len(ex.SAMPrompt) != 0 {
		t.Errorf("empty extras: %+v, %v", ex, err)
	}
	for _, bad := range []string{
		`[1]`, `{`, `{"model_path": "/etc/passwd"}`,
		`{"sam_prompt": {}}`, `{"sam_prompt": []}`,
		`{"sam_prompt": [{"type": "point", "data": [1]}]}`,
		`{"sam_prompt": [{"type": "point", "data": [1, 2]}]}`,
		`{"sam_prompt": [{"type": "point", "data": [1, 2], "label": 1.5}]}`,
		`{"sam_prompt": [{"type": "rectangle", "data": [1, 2, 3]}]}`,
		`{"sam_prompt": [{"data": [1, 2], "label": 1}]}`,
		`{"sam_prompt": [{"type": "point", "data": [1e300, 2], "label": 1}]}`,
		`{"cc": 3}`, `{"sam_quant": "yes"}`, `{"putalpha": "yes"}`,
	} {
		if _, err := ParseExtras([]byte(bad)); !errors.Is(err, ErrBadParameter) {
			t.Errorf("%s: error %v, want ErrBadParameter", bad, err)
		}
	}
}
