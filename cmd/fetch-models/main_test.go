package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/imgserve/imgserve/models/catalog"
)

func TestUsageListAndBadArgs(t *testing.T) {
	cat, err := catalog.Load()
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, "")
	code, out, _ := e.run(t, cat, "--help")
	for _, want := range []string{"Usage: scripts/fetch-models.sh", "IMGSERVE_HOME", "IMGSERVE_CACHE", "XDG_CACHE_HOME", "onnxruntime u2netp", "Exit status"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("--help: exit %d, missing %q", code, want)
		}
	}
	code, out, _ = e.run(t, cat, "--list")
	if code != 0 || !strings.Contains(out, "lama  ") || !strings.Contains(out, "models/lama_fp32.onnx") || !strings.Contains(out, "md5 only") {
		t.Errorf("--list: exit %d\n%s", code, out)
	}
	if code, _, errOut := e.run(t, cat, "u2netp", "nope"); code != 2 || !strings.Contains(errOut, `unknown item "nope"`) {
		t.Errorf("unknown item: exit %d, %s", code, errOut)
	}
	if code, _, _ := e.run(t, cat, "--frobnicate"); code != 2 {
		t.Errorf("unknown option: exit %d", code)
	}
}

func TestCacheDirDefaults(t *testing.T) {
	env := func(kv ...string) func(string) string {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) string { return m[k] }
	}
	cases := []struct {
		getenv func(string) string
		want   string
	}{
		{env("HOME", "/h"), "/h/.cache/imgserve"},
		{env("HOME", "/h", "XDG_CACHE_HOME", "/x"), "/x/imgserve"},
		{env("HOME", "/h", "XDG_CACHE_HOME", "/x", "IMGSERVE_CACHE", "/c"), "/c"},
	}
	for _, c := range cases {
		if got := cacheDir(c.getenv); got != c.want {
			t.Errorf("cacheDir = %q, want %q", got, c.want)
		}
	}
}

func TestProgressLines(t *testing.T) {
	var log bytes.Buffer
	p := newProgress(&log, false, time.Nanosecond, "u2net", 4<<20)
	time.Sleep(time.Millisecond)
	p.Write(make([]byte, 1<<20))
	p.done()
	if got := log.String(); !strings.HasPrefix(got, "u2net: 1.0 MiB / 4.0 MiB (25%)") || strings.Contains(got, "\r") {
		t.Errorf("log progress: %q", got)
	}
	var tty bytes.Buffer
	p = newProgress(&tty, true, time.Hour, "u2net", 0)
	p.Write(make([]byte, 3<<20))
	p.done()
	if got := tty.String(); !strings.Contains(got, "\r\033[Ku2net: 3.0 MiB") || !strings.HasSuffix(got, "\n") {
		t.Errorf("terminal progress: %q", got)
	}
}
