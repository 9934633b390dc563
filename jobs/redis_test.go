package jobs

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imgserve/imgserve/internal/redistest"
)

func openRedis(t *testing.T, url string, ttl, claimAfter time.Duration) *Redis {
	t.Helper()
	r, err := OpenRedis(context.Background(), url, RedisOptions{TTL: ttl, Budget: 1 << 30, ClaimAfter: claimAfter})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestRedisThatPersistsIsRefused(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--save", "3600 1"}, `save "3600 1"`},
		{[]string{"--appendonly", "yes"}, "appendonly yes"},
	} {
		srv := redistest.Start(t, c.args...)
		_, err := OpenRedis(context.Background(), srv.URL, RedisOptions{TTL: time.Minute, Budget: 1 << 20})
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "CONFIG SET save ''") {
			t.Errorf("%v: %v", c.args, err)
		}
	}
	if _, err := OpenRedis(context.Background(), "http://nope", RedisOptions{}); err == nil {
		t.Error("a URL that is not redis:// was taken")
	}
}

// replica is one process's view: its backend and manager, and the items
// its workers ran.
type replica struct {
	b   *Redis
	m   *Manager
	mu  sync.Mutex
	ran int
}

// Two replicas share one Redis: both work on one job's items, either
// answers its status and results, and when one dies mid-job (its items
// taken but never finished) the other reclaims them: no item is lost.
func TestRedisReplicasShareAJobAndSurviveADeath(t *testing.T) {
	srv := redistest.Start(t)
	const ttl = time.Minute
	stuck := make(chan struct{}) // the dying replica's items never finish
	defer close(stuck)
	var reps [2]*replica
	for i := range reps {
		r := &replica{b: openRedis(t, srv.URL, ttl, 500*time.Millisecond)}
		run := func(ctx context.Context, w Work) (Output, error) {
			r.mu.Lock()
			r.ran++
			n := r.ran
			r.mu.Unlock()
			if i == 0 && n > 5 {
				select { // replica 0 "dies" on its sixth item
				case <-stuck:
				case <-ctx.Done():
				}
				return Output{}, ctx.Err()
			}
			time.Sleep(10 * time.Millisecond)
			return upper(ctx, w)
		}
		r.m = NewManager(Options{Backend: r.b, Run: run, TTL: ttl, Workers: 2})
		reps[i] = r
	}
	defer reps[1].m.Close()

	const n = 40
	inputs := make([]Input, n)
	for i := range inputs {
		inputs[i] = Input{Name: fmt.Sprintf("%02d.png", i), Image: []byte(fmt.Sprintf("image %d", i)), Cost: 64}
	}
	st, err := reps[0].m.Submit(context.Background(), Spec{Task: TaskCaption}, inputs)
	if err != nil {
		t.Fatal(err)
	}
	// Replica 0 dies once it holds items it will never finish.
	for {
		reps[0].mu.Lock()
		ran := reps[0].ran
		reps[0].mu.Unlock()
		if ran >= 7 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	reps[0].m.Close()

	done := waitFinished(t, reps[1].m, st.ID)
	if done.Done != n || done.Failed != 0 || done.Status != StateDone {
		t.Fatalf("after a replica died: %+v", done)
	}
	if reps[0].ran < 5 || reps[1].ran < 5 {
		t.Fatalf("items ran %d and %d times: both replicas should have worked", reps[0].ran, reps[1].ran)
	}
	for i := range n {
		out, err := reps[1].m.OutputAt(context.Background(), st.ID, i)
		if err != nil || string(out.Data) != strings.ToUpper(fmt.Sprintf("image %d", i)) {
			t.Fatalf("item %d: %q %v", i, out.Data, err)
		}
	}
	// The dead replica's store still answers (another replica would).
	if s, err := reps[0].b.Status(context.Background(), st.ID); err != nil || s.Done != n {
		t.Fatalf("status from the other replica's connection: %+v %v", s, err)
	}
	// Every key expires within the TTL; the inputs are gone already.
	c := reps[1].b.Client()
	for _, k := range jobKeys(st.ID) {
		ttlLeft := c.PTTL(context.Background(), k).Val()
		exists := c.Exists(context.Background(), k).Val() == 1
		if exists && (ttlLeft <= 0 || ttlLeft > ttl) {
			t.Errorf("key %s expires in %v, want within %v", k, ttlLeft, ttl)
		}
		if strings.HasSuffix(k, ":in") && exists {
			t.Errorf("the inputs key %s outlived the items", k)
		}
	}
	if err := reps[1].m.Delete(context.Background(), st.ID); err != nil {
		t.Fatal(err)
	}
	for _, k := range jobKeys(st.ID) {
		if c.Exists(context.Background(), k).Val() != 0 {
			t.Errorf("key %s outlived DELETE", k)
		}
	}
}

// Redis itself erases a finished job at its TTL, with no replica alive.
func TestRedisErasesAJobAtItsTTL(t *testing.T) {
	srv := redistest.Start(t)
	const ttl = 700 * time.Millisecond
	b := openRedis(t, srv.URL, ttl, time.Minute)
	m := NewManager(Options{Backend: b, Run: upper, TTL: ttl, Workers: 1})
	st, err := m.Submit(context.Background(), Spec{Task: TaskCaption}, []Input{{Name: "a", Image: []byte("a")}})
	if err != nil {
		t.Fatal(err)
	}
	waitFinished(t, m, st.ID)
	m.Close()
	c := b.Client()
	for i := 0; ; i++ {
		left := 0
		for _, k := range append(jobKeys(st.ID), redisBudget) {
			left += int(c.Exists(context.Background(), k).Val())
		}
		if left == 0 {
			break
		}
		if i > 200 {
			t.Fatalf("%d keys of the job outlived its TTL of %v", left, ttl)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := b.Status(context.Background(), st.ID); err != ErrNotFound {
		t.Fatalf("status after TTL: %v", err)
	}
}

// A replica renews the items it runs: one that runs longer than
// ClaimAfter is not taken over by another replica while it is alive.
func TestRedisLongItemIsNotReclaimedFromALiveReplica(t *testing.T) {
	srv := redistest.Start(t)
	// A second, renewed every third of it: a loaded machine under -race
	// can delay a renewal by a few hundred milliseconds, not by 700.
	const claimAfter = time.Second
	var runs [2]int
	var mu sync.Mutex
	var ms [2]*Manager
	for i := range ms {
		run := func(ctx context.Context, w Work) (Output, error) {
			mu.Lock()
			runs[i]++
			mu.Unlock()
			time.Sleep(3 * claimAfter)
			return upper(ctx, w)
		}
		ms[i] = NewManager(Options{Backend: openRedis(t, srv.URL, time.Minute, claimAfter), Run: run, TTL: time.Minute, Workers: 1})
		defer ms[i].Close()
	}
	st, err := ms[0].Submit(context.Background(), Spec{Task: TaskCaption}, []Input{{Name: "slow", Image: []byte("x")}})
	if err != nil {
		t.Fatal(err)
	}
	waitFinished(t, ms[0], st.ID)
	mu.Lock()
	defer mu.Unlock()
	if runs[0]+runs[1] != 1 {
		t.Fatalf("the item ran %d times (%v): it was reclaimed from a live replica", runs[0]+runs[1], runs)
	}
}
