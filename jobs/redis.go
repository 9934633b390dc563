package jobs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis keeps jobs in a Redis shared by every replica. Items travel
// through one stream read by one consumer group, so any replica works on
// any job; an item whose replica died is reclaimed by another once it has
// been pending ClaimAfter without a heartbeat (a replica renews the items
// it runs every third of ClaimAfter). A job is four keys, its status, its items'
// states, its inputs and its results, each with an EXPIRE of the TTL,
// renewed as the job progresses: Redis itself erases a job TTL after its
// last change, whether or not any replica is alive.
type Redis struct {
	c          *redis.Client
	ttl        time.Duration
	budget     int64
	claimAfter time.Duration
	consumer   string
	clock      Clock

	mu        sync.Mutex
	lastClaim time.Time
	claimed   []redis.XMessage // reclaimed items not yet handed out
	// beating stops the heartbeat of each item this replica runs.
	beating map[string]context.CancelFunc
}

// RedisStream is the stream job items travel through and RedisGroup its
// consumer group, whose consumers are the replicas, each named
// host-pid-random: XPENDING RedisStream RedisGroup shows the items each
// replica holds.
const (
	RedisStream = "imgserve:jobs:items"
	RedisGroup  = "imgserve"
)

const redisBudget = "imgserve:jobs:budget"

// jobKeys are a job's keys: status, item states, inputs, results.
func jobKeys(id string) []string {
	p := "imgserve:job:" + id
	return []string{p, p + ":items", p + ":in", p + ":out"}
}

// RedisOptions configure OpenRedis.
type RedisOptions struct {
	TTL    time.Duration
	Budget int64
	// ClaimAfter is how long an item may stay with a replica that stopped
	// renewing it before another takes it over (default
	// DefaultClaimAfter).
	ClaimAfter time.Duration
	Clock      Clock
}

// DefaultClaimAfter is RedisOptions.ClaimAfter's default.
const DefaultClaimAfter = 30 * time.Second

// OpenRedis connects to redis://host:port/db and checks that this Redis
// keeps nothing on disk: uploads written to an RDB snapshot or an AOF
// would outlive the hour that jobs promise.
func OpenRedis(ctx context.Context, url string, o RedisOptions) (*Redis, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("--jobs-redis: %w (want redis://host:port/db)", err)
	}
	c := redis.NewClient(opt)
	if err := checkNoPersistence(ctx, c, opt.Addr); err != nil {
		c.Close()
		return nil, err
	}
	if err := c.XGroupCreateMkStream(ctx, RedisStream, RedisGroup, "0").Err(); err != nil && !strings.Contains(err.Error(), "BUSYGROUP") {
		c.Close()
		return nil, fmt.Errorf("jobs redis at %s: creating the consumer group: %w", opt.Addr, err)
	}
	if o.ClaimAfter <= 0 {
		o.ClaimAfter = DefaultClaimAfter
	}
	if o.Clock == nil {
		o.Clock = realClock{}
	}
	host, _ := os.Hostname()
	var b [4]byte
	rand.Read(b[:])
	return &Redis{c: c, ttl: o.TTL, budget: o.Budget, claimAfter: o.ClaimAfter, clock: o.Clock, beating: map[string]context.CancelFunc{},
		consumer: fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))}, nil
}

func checkNoPersistence(ctx context.Context, c *redis.Client, addr string) error {
	cfg, err := c.ConfigGet(ctx, "*").Result()
	if err != nil {
		return fmt.Errorf("jobs redis at %s: cannot read its configuration to check that it keeps nothing on disk (CONFIG GET): %w", addr, err)
	}
	var on []string
	if v := cfg["save"]; v != "" {
		on = append(on, fmt.Sprintf("RDB snapshots (save %q)", v))
	}
	if cfg["appendonly"] == "yes" {
		on = append(on, "the append-only file (appendonly yes)")
	}
	if len(on) > 0 {
		return fmt.Errorf("jobs redis at %s writes to disk: %s. Job uploads and results must never reach a disk, and must be gone within the hour; "+
			"turn persistence off: redis-cli -h HOST -p PORT CONFIG SET save '' and CONFIG SET appendonly no "+
			"(in redis.conf: save \"\" and appendonly no; or start redis-server --save '' --appendonly no)",
			addr, strings.Join(on, " and "))
	}
	return nil
}

// Client is the connection, for tests that look at the keys.
func (r *Redis) Client() *redis.Client { return r.c }

// Keys are the keys a job is stored under.
func (r *Redis) Keys(id string) []string { return jobKeys(id) }

func (r *Redis) Close() error { return r.c.Close() }

// reserveScript admits a job to the budget: entries are "id:cost" scored
// by their expiry (ms), and those past it no longer count.
var reserveScript = redis.NewScript(`
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ms)
local used = 0
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  used = used + tonumber(string.match(m, ':(%d+)$'))
end
local need, budget = tonumber(ARGV[2]), tonumber(ARGV[3])
if used + need > budget then return used end
redis.call('ZADD', KEYS[1], ms + tonumber(ARGV[4]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[4]))
return -1
`)

func (r *Redis) Create(ctx context.Context, st Status, spec Spec, inputs []Input) error {
	var need int64
	for _, in := range inputs {
		need += in.size() + in.Cost
	}
	if need > r.budget {
		return &BudgetError{Need: need, Free: r.budget, Budget: r.budget, Full: true}
	}
	member := st.ID + ":" + strconv.FormatInt(need, 10)
	used, err := reserveScript.Run(ctx, r.c, []string{redisBudget}, member, need, r.budget, r.ttl.Milliseconds()).Int64()
	if err != nil {
		return err
	}
	if used >= 0 {
		return &BudgetError{Need: need, Free: r.budget - used, Budget: r.budget, After: r.ttl}
	}
	keys := jobKeys(st.ID)
	specJSON, _ := json.Marshal(spec)
	_, err = r.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, keys[0], "id", st.ID, "task", st.Task, "items", st.Items, "done", 0, "failed", 0, "started", 0,
			"created", st.CreatedAt.UnixMilli(), "expires", st.ExpiresAt.UnixMilli(), "spec", specJSON, "budget", member)
		items := make([]any, 0, 2*len(inputs))
		in := make([]any, 0, 5*len(inputs))
		for i, x := range inputs {
			b, _ := json.Marshal(st.ItemStatus[i])
			items = append(items, i, b)
			k := strconv.Itoa(i)
			in = append(in, k+":name", x.Name, k+":image", x.Image, k+":boxes", x.Boxes, k+":cost", x.Cost)
			if x.Mask != nil {
				in = append(in, k+":mask", x.Mask)
			}
		}
		p.HSet(ctx, keys[1], items...)
		p.HSet(ctx, keys[2], in...)
		for _, k := range keys[:3] {
			p.PExpire(ctx, k, r.ttl)
		}
		for i := range inputs {
			p.XAdd(ctx, &redis.XAddArgs{Stream: RedisStream, Values: []any{"job", st.ID, "item", i}})
		}
		return nil
	})
	if err != nil {
		r.c.ZRem(context.WithoutCancel(ctx), redisBudget, member)
		return err
	}
	// The inputs live in Redis now: this process's copies go.
	for i := range inputs {
		zeroInput(&inputs[i])
	}
	return nil
}

func (r *Redis) Status(ctx context.Context, id string) (Status, error) {
	keys := jobKeys(id)
	var meta *redis.MapStringStringCmd
	var items *redis.MapStringStringCmd
	_, err := r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		meta = p.HGetAll(ctx, keys[0])
		items = p.HGetAll(ctx, keys[1])
		return nil
	})
	if err != nil {
		return Status{}, err
	}
	m := meta.Val()
	if m["id"] == "" {
		return Status{}, ErrNotFound
	}
	n, _ := strconv.Atoi(m["items"])
	done, _ := strconv.Atoi(m["done"])
	failed, _ := strconv.Atoi(m["failed"])
	started, _ := strconv.Atoi(m["started"])
	ms := func(k string) time.Time { v, _ := strconv.ParseInt(m[k], 10, 64); return time.UnixMilli(v).UTC() }
	st := Status{ID: id, Task: m["task"], Items: n, Done: done, Failed: failed, CreatedAt: ms("created"), ExpiresAt: ms("expires"),
		ItemStatus: make([]ItemStatus, n)}
	st.Status = state(n, done, failed, started)
	if m["finished"] != "" {
		f := ms("finished")
		st.FinishedAt = &f
	}
	for k, v := range items.Val() {
		if i, err := strconv.Atoi(k); err == nil && i >= 0 && i < n {
			json.Unmarshal([]byte(v), &st.ItemStatus[i])
		}
	}
	return st, nil
}

func (r *Redis) Output(ctx context.Context, id string, i int) (Output, error) {
	keys := jobKeys(id)
	k := strconv.Itoa(i)
	raw, err := r.c.HGet(ctx, keys[1], k).Result()
	if errors.Is(err, redis.Nil) {
		return Output{}, ErrNotFound
	}
	if err != nil {
		return Output{}, err
	}
	var it ItemStatus
	json.Unmarshal([]byte(raw), &it)
	switch it.Status {
	case StateFailed:
		return Output{}, ErrItemFailed
	case StateDone:
	default:
		return Output{}, ErrNotReady
	}
	v, err := r.c.HMGet(ctx, keys[3], k, k+":ct", k+":name").Result()
	if err != nil {
		return Output{}, err
	}
	data, _ := v[0].(string)
	ct, _ := v[1].(string)
	name, _ := v[2].(string)
	if v[0] == nil {
		return Output{}, ErrNotFound
	}
	return Output{Name: name, ContentType: ct, Data: []byte(data)}, nil
}

func (r *Redis) Delete(ctx context.Context, id string) error {
	keys := jobKeys(id)
	member, err := r.c.HGet(ctx, keys[0], "budget").Result()
	if errors.Is(err, redis.Nil) {
		return ErrNotFound
	}
	if err != nil {
		return err
	}
	_, err = r.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, keys...)
		p.ZRem(ctx, redisBudget, member)
		return nil
	})
	return err
}

// startScript marks an item running, unless its job is gone or the item
// already finished (a reclaimed item another replica completed).
var startScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HEXISTS', KEYS[1], 'fin:' .. ARGV[1]) == 1 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('HINCRBY', KEYS[1], 'started', 1)
return 1
`)

func (r *Redis) Next(ctx context.Context) (Work, error) {
	for {
		msg, reclaimed, err := r.nextMessage(ctx)
		if err != nil {
			return Work{}, err
		}
		id, _ := msg.Values["job"].(string)
		i, _ := strconv.Atoi(fmt.Sprint(msg.Values["item"]))
		w, ok, err := r.load(ctx, id, i)
		if err != nil {
			return Work{}, err
		}
		if !ok {
			// Its job was deleted or expired, or it is done already.
			r.drop(ctx, msg.ID)
			continue
		}
		w.ref, w.Reclaimed = msg.ID, reclaimed
		r.heartbeat(ctx, msg.ID)
		return w, nil
	}
}

// heartbeat renews an item this replica runs (XCLAIM to itself resets
// its idle time) until Finish, or until ctx ends: a replica that dies or
// stops leaves its items to be reclaimed ClaimAfter later.
func (r *Redis) heartbeat(ctx context.Context, ref string) {
	ctx, cancel := context.WithCancel(ctx)
	r.mu.Lock()
	r.beating[ref] = cancel
	r.mu.Unlock()
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(r.claimAfter / 3):
			}
			r.c.XClaimJustID(ctx, &redis.XClaimArgs{Stream: RedisStream, Group: RedisGroup, Consumer: r.consumer, Messages: []string{ref}})
		}
	}()
}

func (r *Redis) stopHeartbeat(ref string) {
	r.mu.Lock()
	cancel := r.beating[ref]
	delete(r.beating, ref)
	r.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// nextMessage reclaims items left pending by a dead replica first (and
// says so), then reads new ones, blocking a second at a time so that ctx
// is heard.
func (r *Redis) nextMessage(ctx context.Context) (redis.XMessage, bool, error) {
	for {
		if m, ok, err := r.reclaimed(ctx); ok || err != nil {
			return m, ok, err
		}
		res, err := r.c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: RedisGroup, Consumer: r.consumer,
			Streams: []string{RedisStream, ">"}, Count: 1, Block: time.Second}).Result()
		switch {
		case ctx.Err() != nil:
			return redis.XMessage{}, false, ctx.Err()
		case errors.Is(err, redis.Nil):
			continue
		case err != nil:
			return redis.XMessage{}, false, err
		}
		if len(res) > 0 && len(res[0].Messages) > 0 {
			return res[0].Messages[0], false, nil
		}
	}
}

// reclaimed hands out an item that a replica took and left unfinished
// for ClaimAfter, looking for them every quarter of that.
func (r *Redis) reclaimed(ctx context.Context) (redis.XMessage, bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.claimed) == 0 && r.clock.Now().Sub(r.lastClaim) >= r.claimAfter/4 {
		r.lastClaim = r.clock.Now()
		msgs, _, err := r.c.XAutoClaim(ctx, &redis.XAutoClaimArgs{Stream: RedisStream, Group: RedisGroup,
			Consumer: r.consumer, MinIdle: r.claimAfter, Start: "0-0", Count: 16}).Result()
		if err != nil {
			return redis.XMessage{}, false, err
		}
		r.claimed = msgs
	}
	if len(r.claimed) == 0 {
		return redis.XMessage{}, false, nil
	}
	m := r.claimed[0]
	r.claimed = r.claimed[1:]
	return m, true, nil
}

func (r *Redis) load(ctx context.Context, id string, i int) (Work, bool, error) {
	if !validID(id) {
		return Work{}, false, nil
	}
	keys := jobKeys(id)
	k := strconv.Itoa(i)
	running, _ := json.Marshal(ItemStatus{Status: StateRunning})
	var spec *redis.StringCmd
	var in *redis.SliceCmd
	var name *redis.StringCmd
	_, err := r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		spec = p.HGet(ctx, keys[0], "spec")
		in = p.HMGet(ctx, keys[2], k+":name", k+":image", k+":mask", k+":boxes", k+":cost")
		name = p.HGet(ctx, keys[1], k)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return Work{}, false, err
	}
	v := in.Val()
	if spec.Err() != nil || len(v) < 5 || v[1] == nil {
		return Work{}, false, nil
	}
	var it ItemStatus
	json.Unmarshal([]byte(name.Val()), &it)
	it.Status = StateRunning
	running, _ = json.Marshal(it)
	ok, err := startScript.Run(ctx, r.c, keys[:2], k, running).Int()
	if err != nil || ok == 0 {
		return Work{}, false, err
	}
	w := Work{Job: id, Index: i}
	json.Unmarshal([]byte(spec.Val()), &w.Spec)
	str := func(x any) string { s, _ := x.(string); return s }
	w.Input = Input{Name: str(v[0]), Image: []byte(str(v[1])), Boxes: str(v[3])}
	if v[2] != nil {
		w.Input.Mask = []byte(str(v[2]))
	}
	w.Input.Cost, _ = strconv.ParseInt(str(v[4]), 10, 64)
	return w, true, nil
}

func (r *Redis) drop(ctx context.Context, ref string) {
	r.c.XAck(ctx, RedisStream, RedisGroup, ref)
	r.c.XDel(ctx, RedisStream, ref)
}

// finishScript records an item once: a reclaimed item that both replicas
// finished counts once. It drops the input, stores the result, renews
// every key's expiry and the job's budget entry.
var finishScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('HSETNX', KEYS[1], 'fin:' .. ARGV[1], 1) == 0 then return -2 end
local i = ARGV[1]
redis.call('HSET', KEYS[2], i, ARGV[2])
if ARGV[3] == '1' then
  redis.call('HINCRBY', KEYS[1], 'failed', 1)
else
  redis.call('HINCRBY', KEYS[1], 'done', 1)
  redis.call('HSET', KEYS[4], i, ARGV[4], i .. ':ct', ARGV[5], i .. ':name', ARGV[6])
end
redis.call('HDEL', KEYS[3], i .. ':name', i .. ':image', i .. ':mask', i .. ':boxes', i .. ':cost')
redis.call('HSET', KEYS[1], 'expires', ARGV[7])
local n = tonumber(redis.call('HGET', KEYS[1], 'items'))
local fin = tonumber(redis.call('HGET', KEYS[1], 'done')) + tonumber(redis.call('HGET', KEYS[1], 'failed'))
if fin == n then redis.call('HSET', KEYS[1], 'finished', ARGV[8]) end
for k = 1, 4 do
  if redis.call('EXISTS', KEYS[k]) == 1 then redis.call('PEXPIRE', KEYS[k], ARGV[9]) end
end
local member = redis.call('HGET', KEYS[1], 'budget')
if member then
  local now = redis.call('TIME')
  redis.call('ZADD', KEYS[5], 'XX', tonumber(now[1]) * 1000 + tonumber(ARGV[9]), member)
end
return fin
`)

func (r *Redis) Finish(ctx context.Context, w Work, out Output, failure string) (Status, error) {
	defer zeroInput(&w.Input)
	defer Zero(out.Data)
	defer r.stopHeartbeat(w.ref)
	keys := append(jobKeys(w.Job), redisBudget)
	it := ItemStatus{Name: w.Input.Name, Status: StateDone, Output: out.Name}
	failed := "0"
	if failure != "" {
		it = ItemStatus{Name: w.Input.Name, Status: StateFailed, Error: failure}
		failed = "1"
	}
	b, _ := json.Marshal(it)
	now := r.clock.Now()
	res, err := finishScript.Run(ctx, r.c, keys, w.Index, b, failed, out.Data, out.ContentType, out.Name,
		expiry(now, r.ttl).UnixMilli(), now.UnixMilli(), r.ttl.Milliseconds()).Int()
	if err != nil {
		return Status{}, err
	}
	r.drop(ctx, w.ref)
	if res == -1 {
		return Status{}, ErrNotFound
	}
	return r.Status(ctx, w.Job)
}
