package jobs

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/klauspost/compress/zip"

	"github.com/imgserve/imgserve/server/admission"
)

// Limits bound a job's input. The zip ones are checked from the archive's
// directory before a byte is inflated, so a bomb costs nothing.
type Limits struct {
	// MaxItems is the most images in one job; an archive may hold as many
	// masks again.
	MaxItems int
	// MaxBytes bounds the uncompressed size of an archive's entries
	// together.
	MaxBytes int64
	// MaxRatio bounds an entry's uncompressed size over its compressed
	// size (entries of under a MiB are not held to it).
	MaxRatio int64
}

// DefaultLimits are the limits a server takes by default.
var DefaultLimits = Limits{MaxItems: 1000, MaxBytes: 1 << 30, MaxRatio: 100}

// InputError is a job's input that cannot be taken (400), or one over a
// limit (413 when TooLarge).
type InputError struct {
	Msg      string
	TooLarge bool
}

func (e *InputError) Error() string { return e.Msg }

func badInput(format string, args ...any) error {
	return &InputError{Msg: fmt.Sprintf(format, args...)}
}

func tooLarge(format string, args ...any) error {
	return &InputError{Msg: fmt.Sprintf(format, args...), TooLarge: true}
}

// File is an uploaded file: an image or a mask, by its name.
type File struct {
	Name string
	Data []byte
}

// masksDir is the folder of an archive that holds masks, named as their
// images.
const masksDir = "masks"

// ReadZip reads an archive in memory: images at any path outside masks/,
// masks under masks/. Folders, dot files and macOS's __MACOSX metadata are
// skipped. Every limit is checked from the directory first.
func ReadZip(data []byte, l Limits) (images, masks []File, err error) {
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return nil, nil, badInput("malformed zip archive: %v", err)
	}
	var files []*zip.File
	var total uint64
	for _, f := range zr.File {
		if skipEntry(f) {
			continue
		}
		files = append(files, f)
		if len(files) > 2*l.MaxItems {
			return nil, nil, tooLarge("the archive holds more than %d files; a job takes at most %d images (and as many masks)", 2*l.MaxItems, l.MaxItems)
		}
		total += f.UncompressedSize64
		if total > uint64(l.MaxBytes) {
			return nil, nil, tooLarge("the archive's files hold more than %s uncompressed; the limit is %s", admission.Size(int64(min(total, 1<<62))), admission.Size(l.MaxBytes))
		}
		if f.UncompressedSize64 > 1<<20 && f.UncompressedSize64 > uint64(l.MaxRatio)*max(f.CompressedSize64, 1) {
			return nil, nil, tooLarge("archive entry %q inflates %d times; the limit is %d (a zip bomb?)",
				f.Name, f.UncompressedSize64/max(f.CompressedSize64, 1), l.MaxRatio)
		}
		if f.Method != zip.Store && f.Method != zip.Deflate {
			return nil, nil, badInput("archive entry %q uses compression method %d; use stored or deflate", f.Name, f.Method)
		}
	}
	for _, f := range files {
		b, err := readEntry(f)
		if err != nil {
			return nil, nil, err
		}
		file := File{Name: path.Base(f.Name), Data: b}
		if dir, _, ok := strings.Cut(strings.TrimPrefix(f.Name, "./"), "/"); ok && dir == masksDir {
			masks = append(masks, file)
		} else {
			images = append(images, file)
		}
	}
	if len(images) > l.MaxItems {
		return nil, nil, tooLarge("the archive holds %d images; a job takes at most %d", len(images), l.MaxItems)
	}
	return images, masks, nil
}

func skipEntry(f *zip.File) bool {
	if f.FileInfo().IsDir() || strings.HasSuffix(f.Name, "/") {
		return true
	}
	if strings.HasPrefix(f.Name, "__MACOSX/") || strings.HasPrefix(path.Base(f.Name), ".") {
		return true
	}
	return false
}

// readEntry inflates an entry, never past its declared size: a directory
// that lies about sizes does not get past the limits checked on it.
func readEntry(f *zip.File) ([]byte, error) {
	rc, err := f.Open()
	if err != nil {
		return nil, badInput("archive entry %q: %v", f.Name, err)
	}
	defer rc.Close()
	buf := make([]byte, f.UncompressedSize64)
	if _, err := io.ReadFull(rc, buf); err != nil {
		return nil, badInput("archive entry %q is corrupt: %v", f.Name, err)
	}
	var one [1]byte
	if n, _ := rc.Read(one[:]); n > 0 {
		return nil, badInput("archive entry %q is larger than its directory says", f.Name)
	}
	return buf, nil
}

// Stem is a name without its extension: masks and results share their
// image's stem, and an embed job's item is stored under it.
func Stem(name string) string { return strings.TrimSuffix(name, path.Ext(name)) }

// Assemble pairs images with their per-image inputs by name: masks by file
// name (cat.png is cat.jpg's mask, or cat.jpg's own name), boxes from a
// JSON list for every image or an object by image name. Every image needs
// what its task needs, and every mask or box list must name an image.
func Assemble(task string, images, masks []File, boxes string, l Limits) ([]Input, error) {
	switch {
	case len(images) == 0:
		return nil, badInput(`no images: send multipart "image" parts, or a zip archive`)
	case len(images) > l.MaxItems:
		return nil, tooLarge("%d images; a job takes at most %d", len(images), l.MaxItems)
	}
	inputs := make([]Input, len(images))
	byStem := map[string]int{}
	for i, f := range images {
		if err := checkName(f.Name); err != nil {
			return nil, err
		}
		s := Stem(f.Name)
		if j, dup := byStem[s]; dup {
			return nil, badInput("images %q and %q share the name %q: their results would collide", images[j].Name, f.Name, s)
		}
		byStem[s] = i
		inputs[i] = Input{Name: f.Name, Image: f.Data}
	}
	find := func(name string) (int, bool) {
		if i, ok := byStem[Stem(name)]; ok {
			return i, true
		}
		i, ok := byStem[name]
		return i, ok
	}
	takesMask := task == TaskInpaint || task == TaskRemoveWatermark
	if len(masks) > 0 && !takesMask {
		return nil, badInput("task %s takes no masks", task)
	}
	for _, f := range masks {
		i, ok := find(f.Name)
		if !ok {
			return nil, badInput("mask %q matches no image: name a mask as its image (cat.png for cat.jpg)", f.Name)
		}
		if inputs[i].Mask != nil {
			return nil, badInput("two masks for image %q", inputs[i].Name)
		}
		inputs[i].Mask = f.Data
	}
	if boxes = strings.TrimSpace(boxes); boxes != "" {
		if task != TaskRemoveWatermark {
			return nil, badInput("task %s takes no boxes", task)
		}
		if err := assignBoxes(inputs, boxes, find); err != nil {
			return nil, err
		}
	}
	for _, in := range inputs {
		switch {
		case task == TaskInpaint && in.Mask == nil:
			return nil, badInput("image %q has no mask: send a mask of the same name (multipart \"mask\" parts, or masks/ in the archive)", in.Name)
		case task == TaskRemoveWatermark && in.Mask == nil && in.Boxes == "":
			return nil, badInput("image %q has neither a mask nor boxes", in.Name)
		case task == TaskRemoveWatermark && in.Mask != nil && in.Boxes != "":
			return nil, badInput("image %q has both a mask and boxes: give one", in.Name)
		}
	}
	return inputs, nil
}

// assignBoxes gives every image the same list, or each its own from an
// object keyed by image name.
func assignBoxes(inputs []Input, boxes string, find func(string) (int, bool)) error {
	if strings.HasPrefix(boxes, "[") {
		for i := range inputs {
			inputs[i].Boxes = boxes
		}
		return nil
	}
	var per map[string]json.RawMessage
	if err := json.Unmarshal([]byte(boxes), &per); err != nil {
		return badInput(`boxes must be a JSON list of [x, y, w, h] for every image, or an object of such lists by image name`)
	}
	names := make([]string, 0, len(per))
	for name := range per {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		i, ok := find(name)
		if !ok {
			return badInput("boxes for %q match no image", name)
		}
		inputs[i].Boxes = string(per[name])
	}
	return nil
}

// checkName refuses names that could not be a result's file name in the
// archive or a path segment: empty, too long, not UTF-8, with control
// characters or slashes.
func checkName(name string) error {
	if name == "" || name == "." || name == ".." || len(name) > 255 || !utf8.ValidString(name) {
		return badInput("bad file name %q: give each image a file name of 1 to 255 bytes", name)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f || r == '/' || r == '\\' {
			return badInput("bad file name %q: no slashes or control characters", name)
		}
	}
	return nil
}
