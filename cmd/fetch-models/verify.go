package main

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os"

	"github.com/imgserve/imgserve/models/catalog"
)

// MismatchError is a file that is not what the catalog says it is. The
// fetcher deletes such files: an unverified model must never be installed.
type MismatchError struct {
	What, Got, Want string
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("%s mismatch: got %s, want %s", e.What, e.Got, e.Want)
}

// verify checks path against every checksum and size the catalog gives and
// returns a short note on what was verified, saying so plainly when the
// catalog had nothing stronger than an md5 or a size.
func verify(path string, it catalog.Item) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	// The size check first: it is free and catches truncated downloads.
	if it.Bytes > 0 && fi.Size() != it.Bytes {
		return "", &MismatchError{"size", fmt.Sprint(fi.Size()), fmt.Sprint(it.Bytes)}
	}
	var s256, m5 hash.Hash
	var ws []io.Writer
	if it.SHA256 != "" {
		s256 = sha256.New()
		ws = append(ws, s256)
	}
	if it.MD5 != "" {
		m5 = md5.New()
		ws = append(ws, m5)
	}
	if len(ws) > 0 {
		if _, err := io.Copy(io.MultiWriter(ws...), f); err != nil {
			return "", err
		}
	}
	if s256 != nil {
		if got := hex.EncodeToString(s256.Sum(nil)); got != it.SHA256 {
			return "", &MismatchError{"sha256", got, it.SHA256}
		}
	}
	if m5 != nil {
		if got := hex.EncodeToString(m5.Sum(nil)); got != it.MD5 {
			return "", &MismatchError{"md5", got, it.MD5}
		}
	}
	switch {
	case it.Manual:
		return "kept as it is (its upstream publishes no checksum: nothing could be verified)", nil
	case it.SHA256 != "":
		return "sha256 ok", nil
	case it.MD5 != "":
		return "md5 ok (only an md5 is published: nothing stronger could be verified)", nil
	default:
		return fmt.Sprintf("size ok (%d bytes; no checksum is published: nothing stronger could be verified)", it.Bytes), nil
	}
}

// fileSHA1 is for npm tarballs, whose registry shasum is a sha1.
func fileSHA1(path string) (string, error) {
	sum, err := fileHash(path, sha1.New())
	return hex.EncodeToString(sum), err
}

// fileSHA512Base64 is for npm's integrity field, "sha512-<base64>".
func fileSHA512Base64(path string) (string, error) {
	sum, err := fileHash(path, sha512.New())
	return base64.StdEncoding.EncodeToString(sum), err
}

func fileHash(path string, h hash.Hash) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if _, err := io.Copy(h, f); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}
