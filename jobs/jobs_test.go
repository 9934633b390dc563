package jobs

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imgserve/imgserve/internal/fakeclock"
)

// upper is a Runner whose result is its input in upper case: real work,
// different bytes, a known answer.
func upper(_ context.Context, w Work) (Output, error) {
	if bytes.HasPrefix(w.Input.Image, []byte("fail")) {
		return Output{}, errors.New("refused by the task")
	}
	return Output{Name: w.Input.Name + ".out", ContentType: "text/plain", Data: bytes.ToUpper(w.Input.Image)}, nil
}

func waitFinished(t *testing.T, m *Manager, id string) Status {
	t.Helper()
	for range 2000 {
		st, err := m.Status(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if st.Finished() {
			return st
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("job %s did not finish", id)
	return Status{}
}

func allZero(b []byte) bool { return !slices.ContainsFunc(b, func(c byte) bool { return c != 0 }) }

// With a fake clock: a finished job is kept until TTL after its last
// change, then every trace of it is gone: status, results, the memory it
// reserved, and the bytes of its inputs and results, zeroed.
func TestFinishedJobIsErasedAfterTTL(t *testing.T) {
	clk := fakeclock.New()
	const ttl = 15 * time.Minute
	mem := NewMemory(ttl, 1<<20, clk)
	defer mem.Close()
	m := NewManager(Options{Backend: mem, Run: upper, TTL: ttl, Workers: 2, Clock: clk})
	defer m.Close()

	inputs := []Input{
		{Name: "a.png", Image: []byte("first image"), Cost: 100},
		{Name: "b.png", Image: []byte("second image"), Cost: 100},
		{Name: "c.png", Image: []byte("fail: third"), Cost: 100},
	}
	held := [][]byte{inputs[0].Image, inputs[1].Image, inputs[2].Image}
	st, err := m.Submit(context.Background(), Spec{Task: TaskCaption}, inputs)
	if err != nil {
		t.Fatal(err)
	}
	if !st.ExpiresAt.Equal(clk.Now().Add(ttl)) || len(st.ID) != 32 {
		t.Fatalf("status on submit: %+v", st)
	}
	st = waitFinished(t, m, st.ID)
	if st.Status != StateDone || st.Done != 2 || st.Failed != 1 || st.ItemStatus[2].Error != "refused by the task" {
		t.Fatalf("finished status: %+v", st)
	}
	// Each input was dropped, zeroed, when its item was done.
	for i, b := range held {
		if !allZero(b) {
			t.Fatalf("input %d still holds %q after its item finished", i, b)
		}
	}
	out, err := m.Output(context.Background(), st.ID, "b.png")
	if err != nil || string(out.Data) != "SECOND IMAGE" || out.Name != "b.png.out" {
		t.Fatalf("output: %q %v", out.Data, err)
	}
	if _, err := m.Output(context.Background(), st.ID, "c.png"); !errors.Is(err, ErrItemFailed) {
		t.Fatalf("failed item's output: %v", err)
	}
	if got := mem.InUse(); got != int64(len("FIRST IMAGE")+len("SECOND IMAGE")) {
		t.Fatalf("a finished job holds %d bytes, want just its results' %d", got, len("FIRST IMAGE")+len("SECOND IMAGE"))
	}

	clk.Advance(ttl - time.Second)
	if _, err := m.Status(context.Background(), st.ID); err != nil {
		t.Fatalf("a second before its TTL the job is gone: %v", err)
	}
	clk.Advance(time.Second)
	// The sweeper erases it by itself, without anyone asking.
	for i := 0; mem.Len() > 0; i++ {
		if i > 1000 {
			t.Fatal("the sweeper did not erase the expired job")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := m.Status(context.Background(), st.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("status after TTL: %v, want ErrNotFound", err)
	}
	if mem.InUse() != 0 {
		t.Fatalf("after TTL %d bytes are still reserved", mem.InUse())
	}
	if !allZero(out.Data) {
		t.Fatalf("the result's buffer was not zeroed: %q", out.Data)
	}
}

// A job's expiry moves with its progress: one whose items are still
// running when the TTL from submission passes is not cut off while it
// makes progress, and is erased TTL after its last item.
func TestExpiryFollowsTheLastChange(t *testing.T) {
	clk := fakeclock.New()
	const ttl = time.Minute
	mem := NewMemory(ttl, 1<<20, clk)
	defer mem.Close()
	gate := make(chan struct{})
	run := func(ctx context.Context, w Work) (Output, error) {
		<-gate
		return upper(ctx, w)
	}
	m := NewManager(Options{Backend: mem, Run: run, TTL: ttl, Workers: 1, Clock: clk})
	defer m.Close()
	st, err := m.Submit(context.Background(), Spec{Task: TaskCaption}, []Input{{Name: "a", Image: []byte("a")}, {Name: "b", Image: []byte("b")}})
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(40 * time.Second)
	gate <- struct{}{} // item a finishes at 40s: the job now expires at 100s
	for {
		s, _ := m.Status(context.Background(), st.ID)
		if s.Done == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	clk.Advance(40 * time.Second) // 80s: past the first expiry
	if _, err := m.Status(context.Background(), st.ID); err != nil {
		t.Fatalf("a job in progress expired: %v", err)
	}
	close(gate)
	waitFinished(t, m, st.ID)
	clk.Advance(ttl)
	if _, err := m.Status(context.Background(), st.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("status TTL after the last item: %v", err)
	}
}

func TestBudgetRefusesUpFront(t *testing.T) {
	clk := fakeclock.New()
	mem := NewMemory(time.Minute, 1000, clk)
	defer mem.Close()
	m := NewManager(Options{Backend: mem, Run: upper, TTL: time.Minute, Workers: 1, Clock: clk})
	defer m.Close()
	_, err := m.Submit(context.Background(), Spec{Task: TaskCaption}, []Input{{Name: "a", Image: make([]byte, 600), Cost: 500}})
	var be *BudgetError
	if !errors.As(err, &be) || !be.Full || mem.Len() != 0 {
		t.Fatalf("a job larger than the whole budget: %v", err)
	}
	if _, err := m.Submit(context.Background(), Spec{Task: TaskCaption}, []Input{{Name: "a", Image: make([]byte, 500), Cost: 500}}); err != nil {
		t.Fatal(err)
	}
	_, err = m.Submit(context.Background(), Spec{Task: TaskCaption}, []Input{{Name: "b", Image: make([]byte, 300), Cost: 300}})
	if !errors.As(err, &be) || be.Full || be.After <= 0 || !strings.Contains(err.Error(), "retry") {
		t.Fatalf("a job that fits once another expires: %v", err)
	}
}

func zipBytes(t *testing.T, files map[string][]byte, method uint16) []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for name, data := range files {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: method})
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
	}
	zw.Close()
	return buf.Bytes()
}

func TestZipLimits(t *testing.T) {
	l := Limits{MaxItems: 1000, MaxBytes: 8 << 20, MaxRatio: 100}
	var ie *InputError

	// A bomb: 20 MiB of zeros in some 20 KiB.
	bomb := zipBytes(t, map[string][]byte{"a.png": make([]byte, 20<<20)}, zip.Deflate)
	if _, _, err := ReadZip(bomb, l); !errors.As(err, &ie) || !ie.TooLarge {
		t.Fatalf("bomb: %v", err)
	}
	// Within the size limit but inflating 1000 times.
	ratio := zipBytes(t, map[string][]byte{"a.png": make([]byte, 4<<20)}, zip.Deflate)
	if _, _, err := ReadZip(ratio, l); !errors.As(err, &ie) || !strings.Contains(err.Error(), "inflates") {
		t.Fatalf("high ratio: %v", err)
	}
	// 10,000 entries.
	many := map[string][]byte{}
	for i := range 10000 {
		many[fmt.Sprintf("%05d.png", i)] = []byte{1}
	}
	if _, _, err := ReadZip(zipBytes(t, many, zip.Store), l); !errors.As(err, &ie) || !ie.TooLarge {
		t.Fatalf("10,000 entries: %v", err)
	}
	// A directory that understates an entry's size.
	liar := zipBytes(t, map[string][]byte{"a.png": bytes.Repeat([]byte("x"), 5000)}, zip.Store)
	i := bytes.Index(liar, []byte("PK\x01\x02")) // central directory: sizes at offsets 20 and 24
	liar[i+24], liar[i+25] = 10, 0
	liar[i+20], liar[i+21] = 10, 0
	if imgs, _, err := ReadZip(liar, l); err == nil && len(imgs[0].Data) > 10 {
		t.Fatal("an entry was read past the size its directory gives")
	}
	if _, _, err := ReadZip([]byte("not a zip"), l); !errors.As(err, &ie) || ie.TooLarge {
		t.Fatalf("not a zip: %v", err)
	}

	images, masks, err := ReadZip(zipBytes(t, map[string][]byte{
		"photos/a.jpg": []byte("A"), "b.jpg": []byte("B"), "masks/a.png": []byte("M"),
		"__MACOSX/._a.jpg": []byte("x"), ".DS_Store": []byte("x"), "photos/": nil,
	}, zip.Deflate), l)
	if err != nil || len(images) != 2 || len(masks) != 1 || masks[0].Name != "a.png" {
		t.Fatalf("ReadZip: %v %v %v", images, masks, err)
	}
}

func TestAssembleMatchesByName(t *testing.T) {
	l := DefaultLimits
	imgs := []File{{"cat.jpg", []byte("c")}, {"dog.jpg", []byte("d")}}
	in, err := Assemble(TaskInpaint, imgs, []File{{"dog.png", []byte("D")}, {"cat.png", []byte("C")}}, "", l)
	if err != nil || string(in[0].Mask) != "C" || string(in[1].Mask) != "D" {
		t.Fatalf("masks by name: %+v %v", in, err)
	}
	for _, c := range []struct {
		task  string
		masks []File
		boxes string
		want  string
	}{
		{TaskInpaint, []File{{"cat.png", []byte("m")}, {"cow.png", []byte("m")}}, "", `mask "cow.png" matches no image`},
		{TaskInpaint, []File{{"cat.png", []byte("m")}}, "", `image "dog.jpg" has no mask`},
		{TaskRemoveWatermark, nil, `{"cat.jpg": [[1,1,2,2]], "emu.jpg": [[1,1,2,2]]}`, `boxes for "emu.jpg" match no image`},
		{TaskRemoveWatermark, nil, `{"cat.jpg": [[1,1,2,2]]}`, `image "dog.jpg" has neither`},
		{TaskRemoveBackground, []File{{"cat.png", []byte("m")}}, "", "takes no masks"},
	} {
		if _, err := Assemble(c.task, imgs, c.masks, c.boxes, l); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.task, err, c.want)
		}
	}
	if _, err := Assemble(TaskCaption, []File{{"a.jpg", nil}, {"a.png", nil}}, nil, "", l); err == nil {
		t.Error("two images of one name were taken")
	}
	in, err = Assemble(TaskRemoveWatermark, imgs, nil, "[[1,2,3,4]]", l)
	if err != nil || in[1].Boxes != "[[1,2,3,4]]" {
		t.Fatalf("boxes for every image: %v", err)
	}
}

func TestIDsAreUnguessable(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := newID()
		if len(id) != 32 || !validID(id) || seen[id] {
			t.Fatalf("bad or repeated id %q", id)
		}
		seen[id] = true
	}
	if validID("../../etc") || validID(strings.Repeat("g", 32)) {
		t.Fatal("validID takes what newID never makes")
	}
}

// While interactive work is in flight, items wait for it, and after a
// second run one at a time; when it is not, every worker runs one.
func TestItemsMakeWayForInteractiveWork(t *testing.T) {
	for _, busy := range []bool{true, false} {
		mem := NewMemory(time.Minute, 1<<20, nil)
		var mu sync.Mutex
		running, most := 0, 0
		var starts, ends []time.Time
		inputs := make([]Input, 3)
		for i := range inputs {
			inputs[i] = Input{Name: fmt.Sprint(i), Image: []byte("x")}
		}
		run := func(ctx context.Context, w Work) (Output, error) {
			mu.Lock()
			running++
			most = max(most, running)
			starts = append(starts, time.Now())
			mu.Unlock()
			if busy {
				time.Sleep(50 * time.Millisecond)
			} else {
				// Idle: every item must be able to run beside the others, so
				// each waits for all to have started (not for a time slice,
				// which a slow machine may never overlap).
				for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
					mu.Lock()
					all := most == len(inputs)
					mu.Unlock()
					if all {
						break
					}
				}
			}
			mu.Lock()
			running--
			ends = append(ends, time.Now())
			mu.Unlock()
			return upper(ctx, w)
		}
		m := NewManager(Options{Backend: mem, Run: run, TTL: time.Minute, Workers: 4, Busy: func() bool { return busy }})
		st, err := m.Submit(context.Background(), Spec{Task: TaskCaption}, inputs)
		if err != nil {
			t.Fatal(err)
		}
		waitFinished(t, m, st.ID)
		m.Close()
		mem.Close()
		if want := map[bool]int{true: 1, false: 3}[busy]; most != want {
			t.Errorf("busy=%v: %d items ran at once, want %d", busy, most, want)
		}
		// Busy, each item waits maxYield after the one before it ended:
		// the waiting workers do not start one after another.
		for i := 1; busy && i < len(starts); i++ {
			if gap := starts[i].Sub(ends[i-1]); gap < maxYield {
				t.Errorf("busy: item %d started %v after the one before ended, want at least %v", i, gap, maxYield)
			}
		}
	}
}

// Workers that were idle when a job came all take its items: the signal
// that wakes one idle worker is passed on while items wait. (The server's
// workers are idle long before a job comes; a job's items ran one at a
// time when only one woke.)
func TestIdleWorkersAllTakeANewJobsItems(t *testing.T) {
	const workers = 4
	mem := NewMemory(time.Minute, 1<<20, nil)
	defer mem.Close()
	var mu sync.Mutex
	running, most, want := 0, 0, 1
	run := func(ctx context.Context, w Work) (Output, error) {
		mu.Lock()
		running++
		most = max(most, running)
		mu.Unlock()
		// Each item waits for want items to have started together, or
		// gives up after 10 s.
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			mu.Lock()
			all := most >= want
			mu.Unlock()
			if all {
				break
			}
		}
		mu.Lock()
		running--
		mu.Unlock()
		return upper(ctx, w)
	}
	m := NewManager(Options{Backend: mem, Run: run, TTL: time.Minute, Workers: workers})
	defer m.Close()
	// A first job leaves every worker idle, waiting for the next.
	first, err := m.Submit(context.Background(), Spec{Task: TaskCaption}, []Input{{Name: "first", Image: []byte("x")}})
	if err != nil {
		t.Fatal(err)
	}
	waitFinished(t, m, first.ID)
	mu.Lock()
	most, want = 0, workers
	mu.Unlock()
	time.Sleep(50 * time.Millisecond) // let the workers park (the check holds either way)

	inputs := make([]Input, workers)
	for i := range inputs {
		inputs[i] = Input{Name: fmt.Sprint(i), Image: []byte("x")}
	}
	st, err := m.Submit(context.Background(), Spec{Task: TaskCaption}, inputs)
	if err != nil {
		t.Fatal(err)
	}
	waitFinished(t, m, st.ID)
	mu.Lock()
	defer mu.Unlock()
	if most != workers {
		t.Fatalf("%d items ran at once, want %d: idle workers did not all take the job's items", most, workers)
	}
}
