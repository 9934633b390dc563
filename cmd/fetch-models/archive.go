package main

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
)

// errCorruptArchive marks an archive that cannot be read; a cached copy of it
// is deleted so that the next run fetches it again.
var errCorruptArchive = errors.New("corrupt archive")

// walkTarGz calls fn for each regular file in the .tgz at path, with a reader
// for its contents. fn returns stop=true to end the walk early.
func walkTarGz(path string, fn func(name string, r io.Reader) (stop bool, err error)) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return fmt.Errorf("%w: %v", errCorruptArchive, err)
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: %v", errCorruptArchive, err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		stop, err := fn(h.Name, tr)
		if err != nil || stop {
			return err
		}
	}
}

// extractToTemp copies the archive member into a new temp file in dir.
func extractToTemp(archive, member, dir string) (string, error) {
	var out string
	err := walkTarGz(archive, func(name string, r io.Reader) (bool, error) {
		if name != member {
			return false, nil
		}
		p, err := writeTemp(dir, r)
		out = p
		return true, err
	})
	if err == nil && out == "" {
		err = fmt.Errorf("%s not found in the archive", member)
	}
	return out, err
}

// readMember returns a small archive member (a JSON index) in memory.
func readMember(archive, member string, limit int64) ([]byte, error) {
	var data []byte
	found := false
	err := walkTarGz(archive, func(name string, r io.Reader) (bool, error) {
		if name != member {
			return false, nil
		}
		found = true
		var err error
		data, err = io.ReadAll(io.LimitReader(r, limit))
		return true, err
	})
	if err == nil && !found {
		err = fmt.Errorf("%s not found in the archive", member)
	}
	return data, err
}

// writeTemp copies r into a new temp file in dir; on error nothing is left.
func writeTemp(dir string, r io.Reader) (string, error) {
	f, err := os.CreateTemp(dir, "extract-*")
	if err != nil {
		return "", err
	}
	_, err = io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}
