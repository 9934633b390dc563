// Package access checks API keys and loads TLS certificates, for the HTTP
// server and the gRPC service alike.
//
// Keys are never stored: the key file holds the SHA-256 of each key, in
// hex, one per line, optionally followed by a label that logs may show
// ("3f0a...e1 billing-service"); blank lines and lines starting with # are
// skipped. Make an entry with
//
//	printf %s "$KEY" | sha256sum
//
// A presented key is hashed and compared with every entry in constant time,
// so neither the comparison nor the number of entries tried tells an
// attacker how close a guess came.
package access

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
)

// Keys is a set of accepted API keys, by their SHA-256.
type Keys struct {
	hashes [][sha256.Size]byte
	labels []string
}

// LoadKeys reads a key file (see the package comment).
func LoadKeys(path string) (*Keys, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("api keys: %w", err)
	}
	return ParseKeys(data)
}

// ParseKeys reads the contents of a key file. A file without any key is an
// error: it would lock every client out.
func ParseKeys(data []byte) (*Keys, error) {
	k := &Keys{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		hexHash, label, _ := strings.Cut(text, " ")
		hexHash = strings.TrimPrefix(hexHash, "sha256:")
		raw, err := hex.DecodeString(hexHash)
		if err != nil || len(raw) != sha256.Size {
			return nil, fmt.Errorf("api keys: line %d: want the key's SHA-256 in hex (64 characters), as printf %%s \"$KEY\" | sha256sum prints it", line)
		}
		var h [sha256.Size]byte
		copy(h[:], raw)
		k.hashes = append(k.hashes, h)
		k.labels = append(k.labels, strings.TrimSpace(label))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("api keys: %w", err)
	}
	if len(k.hashes) == 0 {
		return nil, fmt.Errorf("api keys: the file holds no key")
	}
	return k, nil
}

// Enabled reports whether keys are required: false for a nil *Keys.
func (k *Keys) Enabled() bool { return k != nil && len(k.hashes) > 0 }

// Len is the number of keys.
func (k *Keys) Len() int {
	if k == nil {
		return 0
	}
	return len(k.hashes)
}

// Check reports whether key is one of the keys, and its label. Every entry
// is compared, in constant time.
func (k *Keys) Check(key string) (label string, ok bool) {
	if !k.Enabled() || key == "" {
		return "", false
	}
	h := sha256.Sum256([]byte(key))
	match := -1
	for i := range k.hashes {
		if subtle.ConstantTimeCompare(h[:], k.hashes[i][:]) == 1 {
			match = i
		}
	}
	if match < 0 {
		return "", false
	}
	return k.labels[match], true
}

// Bearer returns the token of an Authorization header value
// "Bearer <token>" (the scheme is case-insensitive), as HTTP sends it and
// gRPC clients put it in the "authorization" metadata.
func Bearer(header string) (string, bool) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(header), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

// TLSConfig loads a certificate and its key (PEM files; the certificate
// file may hold the chain) for a server: TLS 1.2 and 1.3 with Go's default
// cipher suites. Callers set NextProtos: HTTP/1.1 for the HTTP server;
// gRPC's credentials.NewTLS adds h2 itself.
func TLSConfig(certFile, keyFile string) (*tls.Config, error) {
	if certFile == "" || keyFile == "" {
		return nil, fmt.Errorf("tls: give both a certificate and a key")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
	}, nil
}
