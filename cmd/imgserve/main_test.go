package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestHelpListsFlags(t *testing.T) {
	var out bytes.Buffer
	if code := run([]string{"--help"}, &out); code != 0 {
		t.Fatalf("--help exited %d", code)
	}
	for _, flag := range []string{"-addr", "-grpc-addr", "127.0.0.1:8081", "-models-dir", "-ort-lib", "-ort-cuda-lib", "-config", "-device", "auto", "--gpu", "127.0.0.1:8080", "fetch-models.sh"} {
		if !strings.Contains(out.String(), flag) {
			t.Errorf("--help does not mention %s", flag)
		}
	}
}

func TestBadStartsFailClearly(t *testing.T) {
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--no-such-flag"}, 2, "flag provided but not defined"},
		{[]string{"extra"}, 2, "unexpected argument"},
		{[]string{"--device", "gpu"}, 1, "want cpu, cuda, cuda:N or auto"},
		{[]string{"--config", "/nonexistent.yaml"}, 1, "no such file"},
		{[]string{"--ort-lib", "/nonexistent/libonnxruntime.so"}, 1, "scripts/fetch-models.sh onnxruntime"},
		{[]string{"--index-snapshot", "x.snap", "--index-postgres", "postgres://localhost/x"}, 2, "exclude each other"},
		{[]string{"--index-max-items", "-1"}, 2, "must not be negative"},
		{[]string{"--index-compact-mib", "0"}, 2, "at least 1"},
	}
	for _, c := range cases {
		var out bytes.Buffer
		if code := run(c.args, &out); code != c.code || !strings.Contains(out.String(), c.want) {
			t.Errorf("%v: exit %d, output %q; want %d containing %q", c.args, code, out.String(), c.code, c.want)
		}
	}
}
