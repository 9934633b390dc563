package clip

import (
	"context"
	"errors"
	"fmt"

	"github.com/imgserve/imgserve/models"
	"github.com/imgserve/imgserve/models/tokenizer"
)

// Model options read by this package.
const (
	// OptionTextModel, on a clip-vision model, names its clip-text model.
	OptionTextModel = "text_model"
	// OptionTokenizerDir loads the tokenizer from a folder instead of the
	// embedded copy.
	OptionTokenizerDir = "tokenizer_dir"
)

// Errors a caller maps to responses; test with errors.Is.
var (
	ErrUnknownModel = errors.New("clip: unknown model")
	ErrNotCLIP      = errors.New("clip: not a CLIP model")
	// ErrNoTower: an image for a text-only model, or a text for a vision
	// model without text_model.
	ErrNoTower = errors.New("clip: the model has no such tower")
	// ErrConfig: text_model names no clip-text model.
	ErrConfig = errors.New("clip: misconfigured")
)

// Towers is a CLIP model as clients name it: a vision tower, a text tower,
// or both. Either may be nil.
type Towers struct {
	Name   string
	Vision *models.Model
	Text   *models.Model
}

// Resolve finds the towers behind a client-facing model name: a clip-vision
// model with its text_model, or a clip-text model alone. A model whose file
// is missing resolves; using it reports models.ErrNotReady.
func Resolve(reg *models.Registry, name string) (*Towers, error) {
	m, ok := reg.Get(name)
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownModel, name)
	}
	t := &Towers{Name: name}
	switch m.Config.Task {
	case TaskText:
		t.Text = m
	case TaskVision:
		t.Vision = m
		if tn := m.Config.Options[OptionTextModel]; tn != "" {
			tm, ok := reg.Get(tn)
			if !ok || tm.Config.Task != TaskText {
				return nil, fmt.Errorf("%w: model %s names %s %q, which is not a configured %s model",
					ErrConfig, name, OptionTextModel, tn, TaskText)
			}
			t.Text = tm
		}
	default:
		return nil, fmt.Errorf("%w: model %s serves task %s, not %s or %s", ErrNotCLIP, name, m.Config.Task, TaskVision, TaskText)
	}
	return t, nil
}

// Tokenizer is the text tower's tokenizer: from the tokenizer_dir option of
// the text model, else of the named model, else the embedded one. It needs
// no weights.
func (t *Towers) Tokenizer() (*tokenizer.CLIP, error) {
	dir := ""
	for _, m := range []*models.Model{t.Text, t.Vision} {
		if m != nil && dir == "" {
			dir = m.Config.Options[OptionTokenizerDir]
		}
	}
	return LoadTokenizer(dir)
}

// ContextLength is the number of token ids the text tower reads per text:
// its fixed sequence length, or CLIP's 77 when the dimension is dynamic or
// the model is not loaded.
func (t *Towers) ContextLength() int {
	if t.Text != nil {
		if st := t.Text.State(); st.Status == models.StatusReady {
			if ids, i := find(st.Inputs, InputIDs); i >= 0 && ids.Shape[1] > 0 {
				return int(ids.Shape[1])
			}
		}
	}
	return tokenizer.CLIPContextLength
}

// Tokenize returns each text's ids as the text tower reads them, without
// padding: framed by <|startoftext|> and <|endoftext|> and truncated to
// ContextLength (keeping <|endoftext|>). truncated[i] tells whether text i
// was cut.
func (t *Towers) Tokenize(texts []string) (ids [][]int, truncated []bool, err error) {
	tok, err := t.Tokenizer()
	if err != nil {
		return nil, nil, err
	}
	n := t.ContextLength()
	ids, truncated = make([][]int, len(texts)), make([]bool, len(texts))
	for i, s := range texts {
		ids[i] = tok.Encode(s)
		if len(ids[i]) > n {
			ids[i] = append(ids[i][:n-1], tok.EOS())
			truncated[i] = true
		}
	}
	return ids, truncated, nil
}

// CheckLoad tells whether embedding images or texts now would be refused
// for a tower's expected queue wait (see inference.Scheduler.CheckLoad).
func (t *Towers) CheckLoad(ctx context.Context, images, texts bool) error {
	for _, m := range []struct {
		use   bool
		model *models.Model
	}{{images, t.Vision}, {texts, t.Text}} {
		if !m.use || m.model == nil {
			continue
		}
		if st := m.model.State(); st.Scheduler != nil {
			if err := st.Scheduler.CheckLoad(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}
