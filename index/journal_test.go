package index

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// crash stops a durable store the way a killed process does: no final
// snapshot, the log left as written.
func (s *Store) crash() {
	close(s.j.stop)
	<-s.j.done
	s.j.f.Close()
}

// contents is every collection's items, for comparing stores.
func contents(t *testing.T, s *Store) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, name := range s.Names() {
		c, _ := s.Get(name)
		c.alloc.Lock()
		ids := make([]string, 0, len(c.rows))
		for id := range c.rows {
			ids = append(ids, id)
		}
		c.alloc.Unlock()
		slices.Sort(ids)
		out[name] = fmt.Sprintf("dim %d %s", c.dim, c.params)
		for _, id := range ids {
			v, m, _ := c.Get(id)
			out[name+"/"+id] = fmt.Sprintf("%v %s", v, m)
		}
	}
	return out
}

func openDurable(t *testing.T, path string, l Limits) *Store {
	t.Helper()
	s, err := OpenStore(path, l, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mutate(t *testing.T, s *Store, seed uint64) {
	t.Helper()
	rng := newRand(seed)
	if _, _, err := s.create("graph", 8, Params{M: 4, EfConstruction: 10}, true); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.create("quant", 8, Params{Storage: StorageInt8, Index: IndexFlat}, true); err != nil {
		t.Fatal(err)
	}
	for i := range 300 {
		for _, name := range []string{"graph", "quant"} {
			c, _ := s.Get(name)
			id := testID(rng.IntN(100))
			if rng.IntN(4) == 0 {
				_ = c.Delete(id)
				continue
			}
			var meta json.RawMessage
			if i%2 == 0 {
				meta = json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))
			}
			if err := c.Upsert(id, gaussian(rng, make([]float32, 8)), meta); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A collection dropped and recreated with another dimension.
	_ = s.Delete("again")
	c, _ := s.GetOrCreate("again", 3)
	_ = c.Upsert("x", []float32{1, 2, 3}, nil)
	if err := s.Delete("again"); err != nil {
		t.Fatal(err)
	}
	c, _ = s.GetOrCreate("again", 2)
	_ = c.Upsert("y", []float32{1, 2}, nil)
	_, _ = s.GetOrCreate("gone", 2)
	_ = s.Delete("gone")
}

func TestJournalReplay(t *testing.T) {
	path := filepath.Join(t.TempDir(), "index.snap")
	s := openDurable(t, path, Limits{})
	mutate(t, s, 1)
	want := contents(t, s)
	s.crash()
	r := openDurable(t, path, Limits{})
	if got := contents(t, r); !maps(got, want) {
		t.Fatalf("after replaying the log:\n%v\nwant\n%v", got, want)
	}
	// More writes on top, a crash again, then a clean close and reopen.
	mutate(t, r, 2)
	want = contents(t, r)
	r.crash()
	r = openDurable(t, path, Limits{})
	if got := contents(t, r); !maps(got, want) {
		t.Fatal("after the second replay, contents differ")
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if logs, _ := logSeqs(path); len(logs) != 1 {
		t.Fatalf("after Close: logs %v, want just the new empty one", logs)
	}
	r = openDurable(t, path, Limits{})
	defer r.Close()
	if got := contents(t, r); !maps(got, want) {
		t.Fatal("after Close and reopen, contents differ")
	}
}

func maps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// A record cut short at the end of the last log (a crash mid-write) is
// dropped and the file truncated; damage in an older log is refused.
func TestJournalTornTail(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "index.snap")
	s := openDurable(t, path, Limits{})
	mutate(t, s, 3)
	want := contents(t, s)
	s.crash()
	seqs, _ := logSeqs(path)
	last := logName(path, seqs[len(seqs)-1])
	good, _ := os.ReadFile(last)
	// Every cut of the last record, and garbage after the last one.
	for _, tail := range [][]byte{good[:len(good)-1], good[:len(good)-9], append(slices.Clone(good), 1, 2, 3)} {
		if err := os.WriteFile(last, tail, 0o600); err != nil {
			t.Fatal(err)
		}
		r, err := OpenStore(path, Limits{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		got := contents(t, r)
		r.crash()
		if len(tail) > len(good) && !maps(got, want) {
			t.Fatal("garbage after the last record changed the contents")
		}
		if st, _ := os.Stat(last); st.Size() > int64(len(good)) {
			t.Fatalf("torn tail not truncated: %d bytes", st.Size())
		}
		// The new log of the reopen is empty; remove it so the damaged
		// one stays the last.
		seqs, _ := logSeqs(path)
		for _, n := range seqs[1:] {
			os.Remove(logName(path, n))
		}
	}
	// Damage in the middle of a log that is not the last.
	bad := slices.Clone(good)
	bad[len(bad)/2] ^= 0x40
	if err := os.WriteFile(last, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(logName(path, seqs[len(seqs)-1]+1), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenStore(path, Limits{}, nil); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("damaged older log: %v, want ErrCorrupt", err)
	}
}

func TestJournalCompaction(t *testing.T) {
	old := CompactBytes
	CompactBytes = 4 << 10
	defer func() { CompactBytes = old }()
	path := filepath.Join(t.TempDir(), "index.snap")
	s := openDurable(t, path, Limits{})
	for i := range 5 {
		mutate(t, s, uint64(10+i))
		if err := s.compact(); err != nil {
			t.Fatal(err)
		}
	}
	want := contents(t, s)
	if logs, _ := logSeqs(path); len(logs) != 1 {
		t.Fatalf("logs after compaction: %v", logs)
	}
	// A compaction cut short after its new log was opened leaves an older
	// log beside the snapshot: ignored and removed at the next start.
	s.crash()
	seqs, _ := logSeqs(path)
	stale := logName(path, seqs[0]-1)
	if err := os.WriteFile(stale, []byte("stale"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := openDurable(t, path, Limits{})
	defer r.Close()
	if got := contents(t, r); !maps(got, want) {
		t.Fatal("contents differ after compactions")
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stale log still there: %v", err)
	}
}

func TestLimits(t *testing.T) {
	s := NewStore()
	s.SetLimits(Limits{MaxCollections: 2, MaxItems: 3})
	a, _ := s.GetOrCreate("a", 2)
	if _, err := s.GetOrCreate("b", 2); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetOrCreate("c", 2); !errors.Is(err, ErrLimit) {
		t.Fatalf("third collection: %v", err)
	}
	for i := range 3 {
		if err := a.Upsert(testID(i), []float32{1, float32(i)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Upsert("four", []float32{1, 1}, nil); !errors.Is(err, ErrLimit) {
		t.Fatalf("fourth item: %v", err)
	}
	if err := a.Upsert(testID(0), []float32{2, 1}, nil); err != nil {
		t.Fatalf("replacing at the limit: %v", err)
	}
	if err := a.Delete(testID(1)); err != nil {
		t.Fatal(err)
	}
	if err := a.Upsert("four", []float32{1, 1}, nil); err != nil {
		t.Fatalf("after a delete: %v", err)
	}

	m := NewStore()
	m.SetLimits(Limits{MaxMemory: 64 << 10})
	c, _ := m.GetOrCreate("big", 512)
	var err error
	n := 0
	for ; err == nil; n++ {
		err = c.Upsert(testID(n), gaussian(newRand(uint64(n)), make([]float32, 512)), nil)
	}
	if !errors.Is(err, ErrLimit) || m.MemoryBytes() > 64<<10 || n < 10 {
		t.Fatalf("memory limit: %v after %d items, %d bytes", err, n, m.MemoryBytes())
	}
	if err := m.Delete("big"); err != nil || m.MemoryBytes() != 0 {
		t.Fatalf("memory after dropping the collection: %d %v", m.MemoryBytes(), err)
	}
}
