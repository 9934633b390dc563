package preprocess

import (
	"fmt"
	"image/color"
	"strconv"
	"strings"
)

// ParseColor parses a background colour given by a user:
//
//	#rrggbb, #rrggbbaa        hex, alpha defaults to ff
//	r,g,b  or  r,g,b,a        decimal 0..255, alpha defaults to 255
//
// Surrounding spaces and spaces after commas are allowed; rembg's
// "(r, g, b, a)" tuple form is accepted too. Errors wrap ErrInvalidColor
// and say what was expected, without echoing long input back.
func ParseColor(s string) (color.NRGBA, error) {
	t := strings.TrimSpace(s)
	if strings.HasPrefix(t, "(") && strings.HasSuffix(t, ")") {
		t = strings.TrimSpace(t[1 : len(t)-1])
	}
	if t == "" {
		return color.NRGBA{}, fmt.Errorf("%w: empty; want #rrggbb, #rrggbbaa or r,g,b[,a]", ErrInvalidColor)
	}
	if strings.HasPrefix(t, "#") {
		return parseHexColor(t[1:])
	}
	parts := strings.Split(t, ",")
	if len(parts) != 3 && len(parts) != 4 {
		return color.NRGBA{}, fmt.Errorf("%w: %d components; want r,g,b or r,g,b,a", ErrInvalidColor, len(parts))
	}
	v := [4]uint8{3: 255}
	for i, p := range parts {
		p = strings.TrimSpace(p)
		n, err := strconv.ParseUint(p, 10, 8)
		if err != nil {
			return color.NRGBA{}, fmt.Errorf("%w: component %d %q is not an integer 0..255", ErrInvalidColor, i+1, truncate(p, 8))
		}
		v[i] = uint8(n)
	}
	return color.NRGBA{R: v[0], G: v[1], B: v[2], A: v[3]}, nil
}

func parseHexColor(h string) (color.NRGBA, error) {
	if len(h) != 6 && len(h) != 8 {
		return color.NRGBA{}, fmt.Errorf("%w: #%s has %d hex digits; want 6 (#rrggbb) or 8 (#rrggbbaa)", ErrInvalidColor, truncate(h, 8), len(h))
	}
	n, err := strconv.ParseUint(h, 16, 32)
	if err != nil {
		return color.NRGBA{}, fmt.Errorf("%w: #%s is not hexadecimal", ErrInvalidColor, truncate(h, 8))
	}
	if len(h) == 6 {
		n = n<<8 | 0xFF
	}
	return color.NRGBA{R: uint8(n >> 24), G: uint8(n >> 16), B: uint8(n >> 8), A: uint8(n)}, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
