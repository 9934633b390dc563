package recovered

import (
	"errors"
	"sync/atomic"
	"testing"
)

func TestGroupRaisesAPanicInTheWaiter(t *testing.T) {
	var g Group
	var finished atomic.Int32
	for i := range 4 {
		g.Go(func() {
			if i == 2 {
				panic("band 2")
			}
			finished.Add(1)
		})
	}
	defer func() {
		p, ok := recover().(*Panic)
		if !ok || p.Value != "band 2" || len(p.Stack) == 0 {
			t.Fatalf("Wait raised %v", p)
		}
		if finished.Load() != 3 {
			t.Fatalf("%d of the other goroutines finished", finished.Load())
		}
	}()
	g.Wait()
	t.Fatal("Wait did not raise the panic")
}

func TestReportCountsByPlace(t *testing.T) {
	count := func() uint64 {
		for _, c := range Counts() {
			if c.Where == "test.place" {
				return c.N
			}
		}
		return 0
	}
	before := count()
	if err := Report("test.place", "boom"); !errors.Is(err, ErrPanic) {
		t.Fatalf("Report returned %v", err)
	}
	if count() != before+1 {
		t.Fatal("not counted")
	}
}
