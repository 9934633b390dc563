package index

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
)

func TestValidName(t *testing.T) {
	for _, name := range []string{"a", "clip-vit-b32", "Photos_2024.v2", strings.Repeat("x", 64), "..", "-"} {
		if !ValidName(name) {
			t.Errorf("ValidName(%q) = false", name)
		}
	}
	for _, name := range []string{"", strings.Repeat("x", 65), "a b", "a/b", "ä", "a\x00", "name?"} {
		if ValidName(name) {
			t.Errorf("ValidName(%q) = true", name)
		}
	}
}

func TestStore(t *testing.T) {
	s := NewStore()
	if _, err := s.Get("photos"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get unknown: %v", err)
	}
	if _, err := s.Get("a/b"); !errors.Is(err, ErrBadName) {
		t.Fatalf("Get bad name: %v", err)
	}
	if _, err := s.GetOrCreate("a b", 3); !errors.Is(err, ErrBadName) {
		t.Fatalf("GetOrCreate bad name: %v", err)
	}
	if _, err := s.GetOrCreate("x", 0); !errors.Is(err, ErrDimension) {
		t.Fatalf("GetOrCreate dim 0: %v", err)
	}
	if len(s.Names()) != 0 {
		t.Fatal("failed creations left collections behind")
	}
	c, err := s.GetOrCreate("photos", 3)
	if err != nil || c.Dim() != 3 {
		t.Fatalf("GetOrCreate: %v %v", c, err)
	}
	if c2, err := s.GetOrCreate("photos", 3); err != nil || c2 != c {
		t.Fatalf("second GetOrCreate returned another collection: %v", err)
	}
	if _, err := s.GetOrCreate("photos", 4); !errors.Is(err, ErrDimension) {
		t.Fatalf("dimension mismatch: %v", err)
	}
	if g, err := s.Get("photos"); err != nil || g != c {
		t.Fatalf("Get: %v", err)
	}
	_, _ = s.GetOrCreate("b", 2)
	_, _ = s.GetOrCreate("A", 2)
	if got := s.Names(); !slices.Equal(got, []string{"A", "b", "photos"}) {
		t.Fatalf("Names = %v", got)
	}
	if err := s.Delete("b"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete("b"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second Delete: %v", err)
	}
	if err := s.Delete(""); !errors.Is(err, ErrBadName) {
		t.Fatalf("Delete bad name: %v", err)
	}
	if got := s.Names(); !slices.Equal(got, []string{"A", "photos"}) {
		t.Fatalf("Names after delete = %v", got)
	}
	// A deleted collection stays usable by whoever still holds it.
	_ = c.Upsert("x", []float32{1, 0, 0}, nil)
	_ = s.Delete("photos")
	if hits, err := c.Search([]float32{1, 0, 0}, 1); err != nil || hits[0].ID != "x" {
		t.Fatalf("search on deleted collection: %v %v", hits, err)
	}
}

func TestStoreConcurrentGetOrCreate(t *testing.T) {
	s := NewStore()
	got := make([]*Collection, 8)
	var wg sync.WaitGroup
	for i := range got {
		wg.Go(func() {
			c, err := s.GetOrCreate("shared", 8)
			if err != nil {
				t.Error(err)
			}
			got[i] = c
		})
	}
	wg.Wait()
	for _, c := range got {
		if c != got[0] {
			t.Fatal("concurrent GetOrCreate returned different collections")
		}
	}
}
