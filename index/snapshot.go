package index

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
)

// Snapshot file format, version 1. All integers are little-endian.
//
//	magic    [8]byte  "IMGSIDX\x00"
//	version  uint32   1
//	ncols    uint32
//	ncols times, in name order:
//	  nameLen uint8, name [nameLen]byte
//	  dim     uint32
//	  count   uint64
//	  count times: idLen uint16, id, metaLen uint16, meta
//	  count*dim float32 (IEEE 754 bits), row-major
//	crc      uint32   CRC-32C of every preceding byte
//
// Vectors are stored already normalised and loaded as they are, so a round
// trip is bit-exact. The checksum sits at the end so that the writer can
// stream; the reader therefore cannot trust lengths before reaching it and
// instead bounds every allocation by the bytes actually left in the file.

const (
	snapVersion = 1
	snapHeader  = 8 + 4 + 4
)

var (
	snapMagic  = [8]byte{'I', 'M', 'G', 'S', 'I', 'D', 'X', 0}
	castagnoli = crc32.MakeTable(crc32.Castagnoli)
)

// Snapshot writes every collection to path, atomically: the data goes to a
// temporary file in the same directory, which is fsynced and then renamed
// over path, so a crash leaves either the old file or the new one, never a
// mix.
//
// Each collection is consistent in itself (its read lock is held while it
// is written), but collections are written one after another, so a write to
// one collection during the snapshot may or may not be included. While a
// collection is being written its writers wait, and because sync.RWMutex
// lets a waiting writer hold off new readers, so do searches that arrive
// after such a writer; snapshot at quiet times if that matters.
func (s *Store) Snapshot(path string) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("index: snapshot: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
			err = fmt.Errorf("index: snapshot %s: %w", path, err)
		}
	}()

	crc := crc32.New(castagnoli)
	w := bufio.NewWriterSize(io.MultiWriter(f, crc), 1<<20)
	if err = s.write(w); err != nil {
		return err
	}
	if err = w.Flush(); err != nil {
		return err
	}
	if _, err = f.Write(binary.LittleEndian.AppendUint32(nil, crc.Sum32())); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	// The rename itself is only durable once the directory is synced.
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func (s *Store) write(w *bufio.Writer) error {
	// Fix the set of collections first: the header carries their count.
	s.mu.RLock()
	names := make([]string, 0, len(s.cols))
	for name := range s.cols {
		names = append(names, name)
	}
	slices.Sort(names)
	cols := make([]*Collection, len(names))
	for i, name := range names {
		cols[i] = s.cols[name]
	}
	s.mu.RUnlock()

	b := make([]byte, 0, 64<<10)
	b = append(b, snapMagic[:]...)
	b = binary.LittleEndian.AppendUint32(b, snapVersion)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(cols)))
	if _, err := w.Write(b); err != nil {
		return err
	}
	for i, c := range cols {
		if err := c.write(w, names[i], b); err != nil {
			return err
		}
	}
	return nil
}

// write streams one collection; scratch is reused as an encoding buffer.
func (c *Collection) write(w *bufio.Writer, name string, scratch []byte) error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	b := scratch[:0]
	b = append(b, byte(len(name)))
	b = append(b, name...)
	b = binary.LittleEndian.AppendUint32(b, uint32(c.dim))
	b = binary.LittleEndian.AppendUint64(b, uint64(len(c.ids)))
	if _, err := w.Write(b); err != nil {
		return err
	}
	for i, id := range c.ids {
		b = binary.LittleEndian.AppendUint16(b[:0], uint16(len(id)))
		b = append(b, id...)
		b = binary.LittleEndian.AppendUint16(b, uint16(len(c.meta[i])))
		b = append(b, c.meta[i]...)
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	// Encode through a fixed buffer rather than reinterpreting memory, so
	// the format is little-endian on every platform.
	chunk := cap(scratch) / 4
	for v := c.vecs; len(v) > 0; {
		n := min(len(v), chunk)
		b = b[:0]
		for _, x := range v[:n] {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
		v = v[n:]
	}
	return nil
}

// LoadSnapshot reads a file written by Store.Snapshot. A file that is
// truncated, has trailing bytes, fails its checksum or holds invalid
// contents is refused with an error wrapping ErrCorrupt.
func LoadSnapshot(path string) (*Store, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("index: load snapshot: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("index: load snapshot: %w", err)
	}
	s, err := readSnapshot(bufio.NewReaderSize(f, 1<<20), st.Size())
	if err != nil {
		return nil, fmt.Errorf("index: load snapshot %s: %w", path, err)
	}
	return s, nil
}

// snapReader hashes what it hands out and knows how many payload bytes
// (everything before the checksum) are left, which caps every length read
// from the file before the checksum can vouch for it.
type snapReader struct {
	r    *bufio.Reader
	h    hash.Hash32
	left int64
	buf  [8]byte
}

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, args...)...)
}

var errTruncated = corrupt("truncated")

func (r *snapReader) full(p []byte) error {
	if int64(len(p)) > r.left {
		return errTruncated
	}
	if _, err := io.ReadFull(r.r, p); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return errTruncated // the file shrank after Stat
		}
		return err
	}
	r.h.Write(p)
	r.left -= int64(len(p))
	return nil
}

func (r *snapReader) u8() (uint8, error) {
	err := r.full(r.buf[:1])
	return r.buf[0], err
}

func (r *snapReader) u16() (uint16, error) {
	err := r.full(r.buf[:2])
	return binary.LittleEndian.Uint16(r.buf[:]), err
}

func (r *snapReader) u32() (uint32, error) {
	err := r.full(r.buf[:4])
	return binary.LittleEndian.Uint32(r.buf[:]), err
}

func (r *snapReader) u64() (uint64, error) {
	err := r.full(r.buf[:8])
	return binary.LittleEndian.Uint64(r.buf[:]), err
}

func readSnapshot(br *bufio.Reader, size int64) (*Store, error) {
	if size < snapHeader+4 {
		return nil, errTruncated
	}
	r := &snapReader{r: br, h: crc32.New(castagnoli), left: size - 4}
	var magic [8]byte
	if err := r.full(magic[:]); err != nil {
		return nil, err
	}
	if magic != snapMagic {
		return nil, corrupt("not a snapshot file (bad magic)")
	}
	version, err := r.u32()
	if err != nil {
		return nil, err
	}
	if version != snapVersion {
		return nil, corrupt("unsupported version %d", version)
	}
	ncols, err := r.u32()
	if err != nil {
		return nil, err
	}
	s := NewStore()
	for range ncols {
		name, c, err := readCollection(r)
		if err != nil {
			return nil, err
		}
		if _, dup := s.cols[name]; dup {
			return nil, corrupt("collection %q appears twice", name)
		}
		s.put(name, c)
	}
	if r.left != 0 {
		return nil, corrupt("%d unexpected bytes after the last collection", r.left)
	}
	var sum [4]byte
	if _, err := io.ReadFull(br, sum[:]); err != nil {
		return nil, errTruncated
	}
	if got, want := r.h.Sum32(), binary.LittleEndian.Uint32(sum[:]); got != want {
		return nil, corrupt("checksum mismatch (computed %08x, file says %08x)", got, want)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		return nil, corrupt("trailing bytes after checksum")
	}
	return s, nil
}

func readCollection(r *snapReader) (string, *Collection, error) {
	nameLen, err := r.u8()
	if err != nil {
		return "", nil, err
	}
	nb := make([]byte, nameLen)
	if err := r.full(nb); err != nil {
		return "", nil, err
	}
	name := string(nb)
	if !ValidName(name) {
		return "", nil, corrupt("bad collection name %q", name)
	}
	dim, err := r.u32()
	if err != nil {
		return "", nil, err
	}
	if dim < 1 || dim > MaxDim {
		return "", nil, corrupt("collection %q: dimension %d", name, dim)
	}
	count, err := r.u64()
	if err != nil {
		return "", nil, err
	}
	// Every row costs at least 4 bytes of lengths plus its vector.
	if perRow := 4 + 4*int64(dim); count > uint64(r.left/perRow) {
		return "", nil, corrupt("collection %q: %d rows do not fit in the file", name, count)
	}
	n := int(count)
	c, _ := NewCollection(int(dim))
	c.ids = make([]string, n)
	c.meta = make([]json.RawMessage, n)
	c.vecs = make([]float32, n*int(dim))
	c.rows = make(map[string]int32, n)

	for i := range n {
		l, err := r.u16()
		if err != nil {
			return "", nil, err
		}
		if l > MaxIDBytes {
			return "", nil, corrupt("collection %q row %d: id of %d bytes", name, i, l)
		}
		idb := make([]byte, l)
		if err := r.full(idb); err != nil {
			return "", nil, err
		}
		id := string(idb)
		if err := checkID(id); err != nil {
			return "", nil, corrupt("collection %q row %d: %v", name, i, err)
		}
		if _, dup := c.rows[id]; dup {
			return "", nil, corrupt("collection %q: id %q appears twice", name, id)
		}
		c.ids[i] = id
		c.rows[id] = int32(i)

		if l, err = r.u16(); err != nil {
			return "", nil, err
		}
		if l > MaxMetadataBytes {
			return "", nil, corrupt("collection %q row %d: metadata of %d bytes", name, i, l)
		}
		if l > 0 {
			m := make(json.RawMessage, l)
			if err := r.full(m); err != nil {
				return "", nil, err
			}
			if !json.Valid(m) {
				return "", nil, corrupt("collection %q row %d: metadata is not JSON", name, i)
			}
			c.meta[i] = m
		}
	}

	d := int(dim)
	rowBytes := make([]byte, 4*d)
	for i := range n {
		if err := r.full(rowBytes); err != nil {
			return "", nil, err
		}
		row := c.vecs[i*d : (i+1)*d]
		var ss [4]float64 // independent sums: one chain would be latency-bound
		for j := range row {
			x := math.Float32frombits(binary.LittleEndian.Uint32(rowBytes[4*j:]))
			row[j] = x
			ss[j&3] += float64(x) * float64(x)
		}
		// Rows were unit length when written; anything else (including
		// NaN, which fails the comparison) means the bytes are not ours.
		if !(math.Abs((ss[0]+ss[1])+(ss[2]+ss[3])-1) <= 1e-3) {
			return "", nil, corrupt("collection %q row %d: vector is not unit length", name, i)
		}
	}
	return name, c, nil
}
