// Package testfiles carries the third-party data the tests and benchmarks
// compare against, embedded so that a clone needs nothing beside it.
//
// rembg/ is rembg's own test images and rembg's u2netp outputs for them
// (MIT, rembg/LICENSE.txt), plus pymatting's alpha-matting references for
// the same images (rembg/ALPHA-MATTING.md says how they were made).
package testfiles

import (
	"embed"
	"testing"
)

//go:embed rembg
var files embed.FS

// Rembg returns rembg/<name>; a missing file fails the test, never skips it.
func Rembg(t testing.TB, name string) []byte {
	t.Helper()
	data, err := files.ReadFile("rembg/" + name)
	if err != nil {
		t.Fatalf("testfiles: %v", err)
	}
	return data
}

// RembgFile returns rembg/<name>, for commands outside tests.
func RembgFile(name string) ([]byte, error) {
	return files.ReadFile("rembg/" + name)
}
