package diffusion

import (
	"math"
	"math/rand/v2"
)

// Noise is one image's source of Gaussian noise. Everything random about
// an image (its initial latents, the VAE encoder's sample, the ancestral
// sampler's per-step noise) is drawn from its Noise in a fixed order, so a
// seed reproduces the image on the same build and device.
//
// The generator is PCG (an algorithm fixed by its definition, unlike
// math/rand's NormFloat64, whose method Go may change) and the Gaussian is
// Box-Muller, written out here for the same reason.
type Noise struct {
	rng   *rand.PCG
	spare float64
	has   bool
}

// NewNoise starts the noise of one image. Image i of a request with seed s
// uses seed s+i, so it can be reproduced alone.
func NewNoise(seed uint32) *Noise {
	return &Noise{rng: rand.NewPCG(uint64(seed), 0x696d67736572766) /* "imgserv" */}
}

// Fill writes unit Gaussian samples into dst.
func (n *Noise) Fill(dst []float32) {
	for i := range dst {
		dst[i] = float32(n.next())
	}
}

func (n *Noise) next() float64 {
	if n.has {
		n.has = false
		return n.spare
	}
	// u1 in (0, 1], so the logarithm is finite; u2 in [0, 1).
	u1 := (float64(n.rng.Uint64()>>11) + 1) / (1 << 53)
	u2 := float64(n.rng.Uint64()>>11) / (1 << 53)
	r := math.Sqrt(-2 * math.Log(u1))
	s, c := math.Sincos(2 * math.Pi * u2)
	n.spare, n.has = r*s, true
	return r * c
}
