package index_test

import (
	"path/filepath"
	"testing"

	"github.com/imgserve/imgserve/index"
	"github.com/imgserve/imgserve/internal/backendtest"
)

func TestBackendMemory(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) index.Backend { return index.NewStore() })
}

func TestBackendDurable(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) index.Backend {
		s, err := index.OpenStore(filepath.Join(t.TempDir(), "index.snap"), index.Limits{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := s.Close(); err != nil {
				t.Error(err)
			}
		})
		return s
	})
}
