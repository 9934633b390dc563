package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"image"
	"image/color"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"strings"

	"github.com/imgserve/imgserve/inference"
	"github.com/imgserve/imgserve/internal/paths"
	"github.com/imgserve/imgserve/internal/testmodels"
	"github.com/imgserve/imgserve/models"
	"github.com/imgserve/imgserve/models/clip"
)

// generateCLIP writes n base and 1000 query embeddings of generated images
// by the synthetic CLIP vision tower, through the same preprocessing and
// scheduler the server uses. Each image is one of n/100 "scenes" (a 4x4
// grid of colours with a gradient) repainted with per-block colour jitter
// and pixel noise, so that embeddings cluster as photos of the same
// subject do.
func generateCLIP(prefix string, n int) error {
	home := paths.RepoHome()
	cpu, _ := inference.ParseDevice("cpu")
	rt, err := inference.NewRuntime(paths.ORTLib(home), cpu)
	if err != nil {
		return err
	}
	defer rt.Close()
	cfg, err := models.ParseConfig(strings.NewReader(`
models:
  - name: clip-vit-b32
    file: clip_vision_synth.onnx
    task: clip-vision
    outputs: [image_embeds]
    batching: {max_batch_size: 32, max_queue_delay: 0s}
`))
	if err != nil {
		return err
	}
	reg := models.NewRegistry(cfg, models.Options{ModelsDir: testmodels.Dir(), Runtime: rt, Logger: slog.New(slog.DiscardHandler)})
	reg.Load()
	defer reg.Close()
	tw, err := clip.Resolve(reg, "clip-vit-b32")
	if err != nil {
		return err
	}
	scenes := max(100, n/100)
	rng := rand.New(rand.NewPCG(5, 6))
	type scene struct{ c [16][3]float64 }
	sc := make([]scene, scenes)
	for i := range sc {
		for b := range 16 {
			for ch := range 3 {
				sc[i].c[b][ch] = rng.Float64() * 255
			}
		}
	}
	const size = 224
	for _, part := range []struct {
		suffix string
		count  int
		seed   uint64
	}{{".base.f32", n, 1}, {".queries.f32", 1000, 2}} {
		f, err := os.Create(prefix + part.suffix)
		if err != nil {
			return err
		}
		w := bufio.NewWriter(f)
		const batch = 256
		for lo := 0; lo < part.count; lo += batch {
			cnt := min(batch, part.count-lo)
			vecs, err := tw.EmbedImages(context.Background(), cnt, func(i int) (*image.NRGBA, error) {
				r := rand.New(rand.NewPCG(part.seed, uint64(lo+i)))
				s := sc[int(float64(scenes)*math.Pow(r.Float64(), 1.5))] // popular scenes are common
				img := image.NewNRGBA(image.Rect(0, 0, size, size))
				var jit [16][3]float64
				for b := range 16 {
					for ch := range 3 {
						jit[b][ch] = s.c[b][ch] + r.NormFloat64()*18
					}
				}
				for y := range size {
					for x := range size {
						b := (y/56)*4 + x/56
						px := [3]float64{}
						for ch := range 3 {
							px[ch] = jit[b][ch] + float64(x%56+y%56)*0.2 + r.NormFloat64()*10
						}
						img.SetNRGBA(x, y, color.NRGBA{clamp(px[0]), clamp(px[1]), clamp(px[2]), 255})
					}
				}
				return img, nil
			})
			if err != nil {
				return err
			}
			for _, v := range vecs {
				for _, x := range v {
					_ = binary.Write(w, binary.LittleEndian, x)
				}
			}
			if lo%(100*batch) == 0 {
				fmt.Fprintf(os.Stderr, "annbench: %s %d/%d\n", part.suffix, lo, part.count)
			}
		}
		if err := w.Flush(); err != nil {
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	return nil
}

func clamp(v float64) uint8 { return uint8(min(255, max(0, math.Round(v)))) }
