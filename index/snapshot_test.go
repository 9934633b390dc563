package index

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// buildStore returns a store with a mix of collections: odd dimensions (so
// the vector tail paths run), metadata and none, an empty collection, and
// rows > 64 KiB of vector data (so the encoder's buffer wraps).
func buildStore(t testing.TB, big bool) *Store {
	t.Helper()
	s := NewStore()
	rng := newRand(9)
	add := func(name string, dim, n int) {
		c, err := s.GetOrCreate(name, dim)
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			var meta json.RawMessage
			if i%3 == 0 {
				meta = json.RawMessage(fmt.Sprintf(`{"i":%d,"s":"é"}`, i))
			}
			if err := c.Upsert(fmt.Sprintf("%s-%d", name, i), gaussian(rng, make([]float32, dim)), meta); err != nil {
				t.Fatal(err)
			}
		}
		// Deletes reorder rows; the snapshot must carry that order faithfully.
		for i := 0; i < n; i += 7 {
			_ = c.Delete(fmt.Sprintf("%s-%d", name, i))
		}
	}
	add("tiny", 3, 5)
	add("empty", 4, 0)
	if big {
		add("clip", 512, 300)
		add("odd", 37, 2000)
	} else {
		add("small", 6, 4)
	}
	return s
}

func assertStoresEqual(t *testing.T, a, b *Store) {
	t.Helper()
	if !slices.Equal(a.Names(), b.Names()) {
		t.Fatalf("names %v vs %v", a.Names(), b.Names())
	}
	for _, name := range a.Names() {
		ca, _ := a.Get(name)
		cb, _ := b.Get(name)
		if ca.Dim() != cb.Dim() || ca.Len() != cb.Len() {
			t.Fatalf("%s: dim/len %d/%d vs %d/%d", name, ca.Dim(), ca.Len(), cb.Dim(), cb.Len())
		}
		if ca.Params() != cb.Params() {
			t.Fatalf("%s: params %v vs %v", name, ca.Params(), cb.Params())
		}
		for id, r := range ca.rows {
			if cb.rows[id] != r {
				t.Fatalf("%s: %s in slot %d, was %d", name, id, cb.rows[id], r)
			}
			va, ma, _ := ca.Get(id)
			vb, mb, _ := cb.Get(id)
			if !slices.EqualFunc(va, vb, func(x, y float32) bool { return math.Float32bits(x) == math.Float32bits(y) }) {
				t.Fatalf("%s: vector of %s differs", name, id)
			}
			if string(ma) != string(mb) || (ma == nil) != (mb == nil) {
				t.Fatalf("%s: metadata of %s differs: %q vs %q", name, id, ma, mb)
			}
		}
		checkInvariants(t, cb)
		if ca.Len() > 0 {
			q := gaussian(newRand(10), make([]float32, ca.Dim()))
			ha, _ := ca.Search(q, 20)
			hb, _ := cb.Search(q, 20)
			if !slices.EqualFunc(ha, hb, func(x, y Hit) bool {
				return x.ID == y.ID && x.Score == y.Score && string(x.Metadata) == string(y.Metadata)
			}) {
				t.Fatalf("%s: searches differ after reload", name)
			}
		}
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "index.snap")
	s := buildStore(t, true)
	if err := s.Snapshot(path); err != nil {
		t.Fatal(err)
	}
	loaded, err := LoadSnapshot(path)
	if err != nil {
		t.Fatal(err)
	}
	assertStoresEqual(t, s, loaded)

	// The loaded store is fully usable, and overwriting a snapshot works.
	c, _ := loaded.Get("tiny")
	if err := c.Upsert("new", []float32{1, 1, 1}, nil); err != nil {
		t.Fatal(err)
	}
	if err := loaded.Snapshot(path); err != nil {
		t.Fatal(err)
	}
	again, err := LoadSnapshot(path)
	if err != nil {
		t.Fatal(err)
	}
	assertStoresEqual(t, loaded, again)

	// No temporary files are left behind.
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != "index.snap" {
		t.Fatalf("directory holds %v", entries)
	}

	// An empty store round-trips too.
	if err := NewStore().Snapshot(path); err != nil {
		t.Fatal(err)
	}
	if e, err := LoadSnapshot(path); err != nil || len(e.Names()) != 0 {
		t.Fatalf("empty store: %v %v", e, err)
	}
}

func TestSnapshotRejectsDamage(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.snap")
	if err := buildStore(t, false).Snapshot(good); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.snap")
	load := func(b []byte) error {
		if err := os.WriteFile(bad, b, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := LoadSnapshot(bad)
		return err
	}
	if err := load(data); err != nil {
		t.Fatalf("intact copy: %v", err)
	}
	// Every truncation.
	for n := range len(data) {
		if err := load(data[:n]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("truncated to %d of %d bytes: error %v, want ErrCorrupt", n, len(data), err)
		}
	}
	// Every single-bit flip, parsed from memory to keep the test quick; the
	// file path is the same code behind a bufio.Reader.
	for i := range len(data) {
		for bit := range 8 {
			b := slices.Clone(data)
			b[i] ^= 1 << bit
			if _, err := readSnapshot(bufio.NewReader(bytes.NewReader(b)), int64(len(b))); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("bit %d of byte %d flipped: error %v, want ErrCorrupt", bit, i, err)
			}
		}
	}
	// Trailing garbage.
	if err := load(append(slices.Clone(data), 0)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("trailing byte: %v", err)
	}
	t.Logf("%d-byte snapshot: all truncations and single-bit flips rejected", len(data))

	// A missing file is an I/O error, not corruption.
	if _, err := LoadSnapshot(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrCorrupt) {
		t.Fatalf("missing file: %v", err)
	}
}

// TestNoFileUnlessSnapshot: persistence is opt-in, so ordinary use must not
// create files anywhere we can see (the working directory and TMPDIR).
func TestNoFileUnlessSnapshot(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	s := buildStore(t, false)
	c, _ := s.GetOrCreate("more", 2)
	_ = c.Upsert("a", []float32{1, 2}, json.RawMessage(`{}`))
	_, _ = c.Search([]float32{1, 2}, 3)
	_ = c.Delete("a")
	_ = s.Delete("more")
	for _, d := range []string{dir, tmp} {
		if entries, _ := os.ReadDir(d); len(entries) != 0 {
			t.Fatalf("%s holds %v without Snapshot being called", d, entries)
		}
	}
	// A failed snapshot leaves nothing behind either.
	if err := s.Snapshot(filepath.Join(dir, "no-such-dir", "x.snap")); err == nil {
		t.Fatal("Snapshot into a missing directory succeeded")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("failed Snapshot left %v", entries)
	}
}
