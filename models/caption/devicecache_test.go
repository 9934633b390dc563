package caption

import (
	"context"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/imgserve/imgserve/internal/testmodels"
)

// With kv_cache: device, a greedy cohort whose rows stay put keeps its
// cache on the device from step to step; rows that move (beams swapping
// histories, sequences leaving) bring it to the host for that step. The
// captions are those of the host path. On a CPU "the device" is host
// memory owned by ONNX Runtime, which runs the same binding code as CUDA.
func TestCacheStaysOnTheDevice(t *testing.T) {
	p := pipeline(t, testConfig(testmodels.CaptionDecoderSynth, "{max_batch_size: 1}", "{kv_cache: device}"), nil)
	if !p.dec.onDevice {
		t.Fatal("kv_cache: device did not put the batcher on the device")
	}

	// One greedy sequence: nobody moves until it ends.
	hidden := encode(t, p, testImages[2])
	seq := &sequence{ctx: context.Background(), hidden: hidden, start: synthEOS, search: &greedy{eos: synthEOS, max: 16}}
	c := newCohort([]*sequence{seq}, p.dec.sig)
	steps := 0
	for len(c.seqs) > 0 {
		stepCohort(t, p.dec, c)
		steps++
		if len(c.seqs) == 0 {
			break
		}
		if c.devPast == nil || c.past != nil || c.devHidden == nil {
			t.Fatalf("after step %d the cache is not on the device (device %v, host %v)", steps, c.devPast != nil, c.past != nil)
		}
	}
	if want := synthCaption(synthCode(hidden), 16); !slices.Equal(seq.search.tokens(), want) {
		t.Errorf("caption %v, want %v", seq.search.tokens(), want)
	}
	if c.devPast != nil || c.devHidden != nil {
		t.Error("a finished cohort still holds device memory")
	}

	// Beams swap histories: those steps come through the host, and the
	// cache still follows each row.
	seqs := testSequences(t, p, testImages[:4])
	c = newCohort(seqs, p.dec.sig)
	v := &cacheVerifier{prev: map[*sequence][][]int64{}}
	for len(c.seqs) > 0 {
		stepCohort(t, p.dec, c)
		v.check(t, c, p.dec.sig)
	}
	if !v.reordered {
		t.Error("no beam swapped history")
	}

	// The whole pipeline, greedy and beam search, equals the host path.
	host := pipeline(t, testConfig(testmodels.CaptionDecoderSynth, "{max_batch_size: 1}", "{kv_cache: host}"), nil)
	if host.dec.onDevice {
		t.Fatal("kv_cache: host left the batcher on the device")
	}
	for _, colour := range testImages {
		for _, beams := range []int{1, 3} {
			h := encode(t, p, colour)
			got, err := p.Generate(context.Background(), h, Params{NumBeams: beams})
			if err != nil {
				t.Fatal(err)
			}
			want, err := host.Generate(context.Background(), h, Params{NumBeams: beams})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, want) {
				t.Errorf("colour %v, %d beams: device %v, host %v", colour, beams, got, want)
			}
		}
	}
}

func TestKVCacheOption(t *testing.T) {
	reg := loadRegistry(t, testConfig(testmodels.CaptionDecoderSynth, "{max_batch_size: 1}", "{kv_cache: gpu}"), nil)
	if _, err := NewRegistry(reg, nil).Get(encName); err == nil || !strings.Contains(err.Error(), `kv_cache "gpu": want device or host`) {
		t.Errorf("kv_cache: gpu: %v", err)
	}
}

// Every batcher test again, with the cache on the device: in a child
// process of this test binary, with every test configuration set to
// kv_cache: device.
func TestBatcherWithTheCacheOnTheDevice(t *testing.T) {
	if os.Getenv(kvCacheEnv) != "" {
		t.Fatalf("%s is set: this test starts the child that uses it", kvCacheEnv)
	}
	tests := []string{
		"TestConcurrentCaptionsShareSteps", "TestMoreCaptionsThanRows", "TestNewRequestJoinsAtNextStep",
		"TestCancelledRequestLeaves", "TestDecodeQueueFull", "TestCacheRowsFollowTheirSequences", "TestCohortsJoin",
		"TestCachedEqualsUncached", "TestStopsAtEOSAndMaxNewTokens", "TestBeamSearchMatchesGreedy", "TestTwoLayerDecoder",
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute) // only a guard against a hang
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^("+strings.Join(tests, "|")+")$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), kvCacheEnv+"=device")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("batcher tests with the cache on the device: %v\n%s", err, out)
	}
	for _, name := range tests {
		if !strings.Contains(string(out), "--- PASS: "+name+" ") {
			t.Errorf("%s did not pass with the cache on the device:\n%s", name, out)
		}
	}
}
