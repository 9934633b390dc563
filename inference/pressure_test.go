package inference

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/imgserve/imgserve/internal/testmodels"
)

func TestSomeAvg10(t *testing.T) {
	for _, c := range []struct {
		in   string
		want float64
		ok   bool
	}{
		{"some avg10=1.23 avg60=0.50 avg300=0.10 total=123456\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n", 1.23, true},
		{"full avg10=9.00 avg60=0.00 avg300=0.00 total=0\nsome avg10=80.04 avg60=85.14 avg300=70.17 total=2979492523\n", 80.04, true},
		{"", 0, false},
		{"some total=5\n", 0, false},
		{"some avg10=x avg60=0.50\n", 0, false},
	} {
		got, ok := someAvg10([]byte(c.in))
		if got != c.want || ok != c.ok {
			t.Errorf("someAvg10(%q) = %v, %v; want %v, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}

// TestWideSpinFollowsPressure: an elastic session with WideSpin runs a
// lone request on its spinning copy only while the CPU pressure is low,
// and on the plain wide one when it is high or unknown.
func TestWideSpinFollowsPressure(t *testing.T) {
	psi := filepath.Join(t.TempDir(), "cpu")
	saved := cpuGauge.path
	cpuGauge.path, cpuGauge.every = psi, 0
	defer func() { cpuGauge.path, cpuGauge.every = saved, time.Second }()

	s, err := testRuntime.NewSession(testmodels.Bytes("affine_f32.onnx"), SessionOptions{IntraOpThreads: 2, NarrowThreads: 1, WideSpin: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.spinning == nil || s.narrow == nil {
		t.Fatal("WideSpin elastic session: want a spinning and a narrow copy")
	}
	for _, c := range []struct {
		psi  string // "" : no file
		want any
	}{
		{"some avg10=2.00 avg60=1.00 avg300=1.00 total=1\n", s.spinning},
		{"some avg10=60.00 avg60=1.00 avg300=1.00 total=1\n", s.sess},
		{"", s.sess},
	} {
		os.Remove(psi)
		if c.psi != "" {
			if err := os.WriteFile(psi, []byte(c.psi), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if got := s.pick(1); got != c.want {
			t.Errorf("pressure %q: picked the wrong session", c.psi)
		}
		if got := s.pick(2); got != s.narrow {
			t.Errorf("pressure %q, two runs: want the narrow session", c.psi)
		}
	}
}
