package preprocess

import (
	"errors"
	"image/color"
	"strings"
	"testing"
)

func TestParseColor(t *testing.T) {
	for in, want := range map[string]color.NRGBA{
		"#ff8000":          {255, 128, 0, 255},
		"#FF8000":          {255, 128, 0, 255},
		"#ff800080":        {255, 128, 0, 128},
		"  #00000000 ":     {0, 0, 0, 0},
		"255,255,255":      {255, 255, 255, 255},
		"10, 20, 30":       {10, 20, 30, 255},
		"10,20,30,0":       {10, 20, 30, 0},
		" 1 , 2 , 3 , 4 ":  {1, 2, 3, 4},
		"(255, 0, 0, 255)": {255, 0, 0, 255},
		"007,8,9":          {7, 8, 9, 255},
	} {
		got, err := ParseColor(in)
		if err != nil || got != want {
			t.Errorf("ParseColor(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for in, msg := range map[string]string{
		"":                             "empty",
		"   ":                          "empty",
		"#fff":                         "6 (#rrggbb)",
		"#ff80001":                     "hex digits",
		"#gg0000":                      "not hexadecimal",
		"#+f0000":                      "not hexadecimal",
		"1,2":                          "2 components",
		"1,2,3,4,5":                    "5 components",
		"256,0,0":                      "component 1",
		"0,-1,0":                       "component 2",
		"0,0,1.5":                      "component 3",
		"0,0,0,x":                      "component 4",
		"red":                          "1 components",
		"#" + strings.Repeat("a", 100): "hex digits",
	} {
		_, err := ParseColor(in)
		if !errors.Is(err, ErrInvalidColor) || !strings.Contains(err.Error(), msg) {
			t.Errorf("ParseColor(%q) error %v, want ErrInvalidColor mentioning %q", in, err, msg)
		}
		if err != nil && len(err.Error()) > 120 {
			t.Errorf("ParseColor(%q): error echoes too much input: %q", in, err)
		}
	}
}
