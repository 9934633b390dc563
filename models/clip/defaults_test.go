package clip

import (
	"bytes"
	"context"
	"image"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/imgserve/imgserve/internal/testmodels"
	"github.com/imgserve/imgserve/models"
)

// defaults.yaml serves CLIP as "clip-vit-b32": without its files the pair
// is unavailable with the fetch command, and tokenising still works; with
// files of the export's signature under the real names (here the synthetic
// towers), both towers load, keep only the embeddings, batch, and embed.
func TestDefaultConfig(t *testing.T) {
	cfg := clipDefaults(t)
	empty := models.NewRegistry(cfg, models.Options{ModelsDir: t.TempDir(), Logger: quiet})
	tw, err := Resolve(empty, "clip-vit-b32")
	if err != nil {
		t.Fatal(err)
	}
	if tw.Text == nil || tw.Text.Config.Name != "clip-vit-b32-text" {
		t.Fatalf("clip-vit-b32 names no text model: %+v", tw)
	}
	for m, item := range map[*models.Model]string{tw.Vision: "clip-vision", tw.Text: "clip-text-int8"} {
		if st := m.State(); st.Status != models.StatusUnavailable || !strings.Contains(st.Reason, "fetch-models.sh "+item) {
			t.Errorf("%s without its file: %s %q", m.Config.Name, st.Status, st.Reason)
		}
	}
	if ids, _, err := tw.Tokenize([]string{"a photo of a cat"}); err != nil || len(ids[0]) != 7 {
		t.Errorf("tokenize without weights: %v %v", ids, err)
	}

	dir := t.TempDir()
	for file, synth := range map[string]string{
		tw.Vision.Config.File: testmodels.ClipVisionSynth,
		tw.Text.Config.File:   testmodels.ClipTextSynth,
	} {
		if err := os.WriteFile(filepath.Join(dir, file), testmodels.Bytes(synth), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	reg := models.NewRegistry(cfg, models.Options{ModelsDir: dir, Runtime: testRuntime, Logger: quiet})
	reg.Load()
	t.Cleanup(reg.Close)
	tw = resolve(t, reg, "clip-vit-b32")
	for _, m := range []*models.Model{tw.Vision, tw.Text} {
		st := m.State()
		if st.Status != models.StatusReady || len(st.Outputs) != 1 || st.Batching.MaxBatchSize != 8 {
			t.Fatalf("%s: %s %s, outputs %v, batch %d", m.Config.Name, st.Status, st.Reason, st.Outputs, st.Batching.MaxBatchSize)
		}
	}
	if _, _, err := tw.EmbedTexts(context.Background(), []string{"a cat", "a dog"}); err != nil {
		t.Error(err)
	}
	if _, err := tw.EmbedImages(context.Background(), 2, func(i int) (*image.NRGBA, error) { return testImage(i, 50, 40), nil }); err != nil {
		t.Error(err)
	}
}

// clipDefaults is the CLIP part of models/defaults.yaml (the file embedded as
// the default configuration): the other entries need their families' tasks,
// which this package does not import.
func clipDefaults(t *testing.T) models.Config {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "defaults.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var all struct {
		Models []map[string]any `yaml:"models"`
	}
	if err := yaml.Unmarshal(data, &all); err != nil {
		t.Fatal(err)
	}
	var mine struct {
		Models []map[string]any `yaml:"models"`
	}
	for _, m := range all.Models {
		if task, _ := m["task"].(string); strings.HasPrefix(task, "clip-") {
			mine.Models = append(mine.Models, m)
		}
	}
	if len(mine.Models) != 2 {
		t.Fatalf("defaults.yaml has %d clip models, want 2", len(mine.Models))
	}
	out, err := yaml.Marshal(mine)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := models.ParseConfig(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}
