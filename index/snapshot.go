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

// Snapshot file format, version 2. All integers are little-endian.
//
//	magic    [8]byte  "IMGSIDX\x00"
//	version  uint32   2
//	logSeq   uint64   the first log file not covered (see journal.go)
//	ncols    uint32
//	ncols times, in name order:
//	  nameLen uint8, name [nameLen]byte
//	  dim     uint32
//	  paramsLen uint16, params (JSON)
//	  slots   uint32   slots in use, live or not
//	  entry   uint64   the graph's entry (slot | level<<32), or all ones
//	  slots times: state uint8 (1 live, 2 free), level uint8,
//	               idLen uint16, id, metaLen uint16, meta
//	  vectors: slots*dim float32 (IEEE 754 bits), or for int8 storage
//	           slots*dim int8 codes, slots*ceil(dim/2) bytes of 4-bit
//	           residuals, then slots float32 scales
//	  hnsw only, slots times, for each level 0..level:
//	           count uint8, count uint32 slot numbers
//	crc      uint32   CRC-32C of every preceding byte
//
// Version 1 (no logSeq, params, states, graph: count rows of id, meta and
// a float32 vector) is still read; its collections get default parameters
// and their graphs are rebuilt on load.
//
// Vectors are stored as held and loaded as they are, so a round trip is
// bit-exact and the graph needs no rebuilding. The checksum sits at the end
// so that the writer can stream; the reader therefore cannot trust lengths
// before reaching it and instead bounds every allocation by the bytes
// actually left in the file, and checks every slot number it reads.

const (
	snapVersion = 2
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
// Each collection is consistent in itself (writes to it wait while it is
// written; searches go on), but collections are written one after
// another, so a write to one collection during the snapshot may or may not
// be included.
func (s *Store) Snapshot(path string) error {
	_, err := s.snapshot(path, 0)
	return err
}

// snapshot writes the file and returns its size.
func (s *Store) snapshot(path string, logSeq uint64) (size int64, err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return 0, fmt.Errorf("index: snapshot: %w", err)
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
	cw := &countWriter{w: io.MultiWriter(f, crc)}
	w := bufio.NewWriterSize(cw, 1<<20)
	if err = s.write(w, logSeq); err != nil {
		return 0, err
	}
	if err = w.Flush(); err != nil {
		return 0, err
	}
	if _, err = f.Write(binary.LittleEndian.AppendUint32(nil, crc.Sum32())); err != nil {
		return 0, err
	}
	if err = f.Sync(); err != nil {
		return 0, err
	}
	if err = f.Close(); err != nil {
		return 0, err
	}
	if err = os.Rename(tmp, path); err != nil {
		return 0, err
	}
	return cw.n + 4, syncDir(dir)
}

// syncDir makes a rename or removal in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func (s *Store) write(w *bufio.Writer, logSeq uint64) error {
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
	b = binary.LittleEndian.AppendUint64(b, logSeq)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(cols)))
	if _, err := w.Write(b); err != nil {
		return err
	}
	for i, c := range cols {
		if err := c.writeTo(w, names[i], b); err != nil {
			return err
		}
	}
	return nil
}

// writeTo streams one collection; scratch is reused as an encoding buffer.
// Holding alloc stops writers from claiming slots, so ids, vectors and
// states are consistent; inserts already past that point may still be
// linking their node, and the graph is written as it stands, which is a
// valid graph at every moment.
func (c *Collection) writeTo(w *bufio.Writer, name string, scratch []byte) error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	c.alloc.Lock()
	defer c.alloc.Unlock()
	params, _ := json.Marshal(c.params)
	used := int(c.used.Load())
	b := scratch[:0]
	b = append(b, byte(len(name)))
	b = append(b, name...)
	b = binary.LittleEndian.AppendUint32(b, uint32(c.dim))
	b = binary.LittleEndian.AppendUint16(b, uint16(len(params)))
	b = append(b, params...)
	b = binary.LittleEndian.AppendUint32(b, uint32(used))
	entry := uint64(noEntry)
	if c.g != nil {
		entry = c.g.entry.Load()
	}
	b = binary.LittleEndian.AppendUint64(b, entry)
	if _, err := w.Write(b); err != nil {
		return err
	}
	for i := range used {
		st, level, id, meta := c.state[i].Load(), uint8(0), c.ids[i], c.meta[i]
		if st != slotLive {
			st, id, meta = slotDeleted, "", nil
		}
		if c.g != nil {
			level = c.g.levels[i]
		}
		b = append(b[:0], byte(st), level)
		b = binary.LittleEndian.AppendUint16(b, uint16(len(id)))
		b = append(b, id...)
		b = binary.LittleEndian.AppendUint16(b, uint16(len(meta)))
		b = append(b, meta...)
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	// Encode through a fixed buffer rather than reinterpreting memory, so
	// the format is little-endian on every platform.
	chunk := cap(scratch) / 4
	floats := func(v []float32) error {
		for len(v) > 0 {
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
	if c.params.Storage == StorageInt8 {
		for _, x := range c.codes[:used*c.dim] {
			if err := w.WriteByte(byte(x)); err != nil {
				return err
			}
		}
		if _, err := w.Write(c.resid[:used*residBytes(c.dim)]); err != nil {
			return err
		}
		if err := floats(c.scale[:used]); err != nil {
			return err
		}
	} else if err := floats(c.vecs[:used*c.dim]); err != nil {
		return err
	}
	if c.g == nil {
		return nil
	}
	var nb []uint32
	for i := range used {
		for l := 0; l <= int(c.g.levels[i]); l++ {
			nb = neighbours(c.g.list(uint32(i), l), nb[:0])
			b = append(b[:0], byte(len(nb)))
			for _, x := range nb {
				b = binary.LittleEndian.AppendUint32(b, x)
			}
			if _, err := w.Write(b); err != nil {
				return err
			}
		}
	}
	return nil
}

// LoadSnapshot reads a file written by Store.Snapshot. A file that is
// truncated, has trailing bytes, fails its checksum or holds invalid
// contents is refused with an error wrapping ErrCorrupt.
func LoadSnapshot(path string) (*Store, error) {
	s, _, err := loadSnapshot(path)
	return s, err
}

func loadSnapshot(path string) (*Store, uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, fmt.Errorf("index: load snapshot: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, 0, fmt.Errorf("index: load snapshot: %w", err)
	}
	s, seq, err := readSnapshotSeq(bufio.NewReaderSize(f, 1<<20), st.Size())
	if err != nil {
		return nil, 0, fmt.Errorf("index: load snapshot %s: %w", path, err)
	}
	return s, seq, nil
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
	s, _, err := readSnapshotSeq(br, size)
	return s, err
}

func readSnapshotSeq(br *bufio.Reader, size int64) (*Store, uint64, error) {
	if size < snapHeader+4 {
		return nil, 0, errTruncated
	}
	r := &snapReader{r: br, h: crc32.New(castagnoli), left: size - 4}
	var magic [8]byte
	if err := r.full(magic[:]); err != nil {
		return nil, 0, err
	}
	if magic != snapMagic {
		return nil, 0, corrupt("not a snapshot file (bad magic)")
	}
	version, err := r.u32()
	if err != nil {
		return nil, 0, err
	}
	var seq uint64
	switch version {
	case 1:
	case 2:
		if seq, err = r.u64(); err != nil {
			return nil, 0, err
		}
	default:
		return nil, 0, corrupt("unsupported version %d", version)
	}
	ncols, err := r.u32()
	if err != nil {
		return nil, 0, err
	}
	s := NewStore()
	for range ncols {
		read := readCollection
		if version == 1 {
			read = readCollectionV1
		}
		name, c, err := read(r)
		if err != nil {
			return nil, 0, err
		}
		if _, dup := s.cols[name]; dup {
			return nil, 0, corrupt("collection %q appears twice", name)
		}
		s.attach(name, c)
		s.mem.Add(c.memBytes())
	}
	if r.left != 0 {
		return nil, 0, corrupt("%d unexpected bytes after the last collection", r.left)
	}
	var sum [4]byte
	if _, err := io.ReadFull(br, sum[:]); err != nil {
		return nil, 0, errTruncated
	}
	if got, want := r.h.Sum32(), binary.LittleEndian.Uint32(sum[:]); got != want {
		return nil, 0, corrupt("checksum mismatch (computed %08x, file says %08x)", got, want)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		return nil, 0, corrupt("trailing bytes after checksum")
	}
	return s, seq, nil
}

func readName(r *snapReader) (string, int, error) {
	nameLen, err := r.u8()
	if err != nil {
		return "", 0, err
	}
	nb := make([]byte, nameLen)
	if err := r.full(nb); err != nil {
		return "", 0, err
	}
	name := string(nb)
	if !ValidName(name) {
		return "", 0, corrupt("bad collection name %q", name)
	}
	dim, err := r.u32()
	if err != nil {
		return "", 0, err
	}
	if dim < 1 || dim > MaxDim {
		return "", 0, corrupt("collection %q: dimension %d", name, dim)
	}
	return name, int(dim), nil
}

// readIDMeta reads an id and a metadata document; an empty id is allowed
// only for free slots (allowEmpty).
func readIDMeta(r *snapReader, name string, i int, allowEmpty bool) (string, json.RawMessage, error) {
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
	if !(allowEmpty && id == "") {
		if err := checkStoredID(id); err != nil {
			return "", nil, corrupt("collection %q row %d: %v", name, i, err)
		}
	}
	if l, err = r.u16(); err != nil {
		return "", nil, err
	}
	if l > MaxMetadataBytes {
		return "", nil, corrupt("collection %q row %d: metadata of %d bytes", name, i, l)
	}
	var m json.RawMessage
	if l > 0 {
		m = make(json.RawMessage, l)
		if err := r.full(m); err != nil {
			return "", nil, err
		}
		if !json.Valid(m) {
			return "", nil, corrupt("collection %q row %d: metadata is not JSON", name, i)
		}
	}
	return id, m, nil
}

// readFloatRow reads one unit-length vector.
func readFloatRow(r *snapReader, row []float32, rowBytes []byte) error {
	if err := r.full(rowBytes); err != nil {
		return err
	}
	var ss [4]float64 // independent sums: one chain would be latency-bound
	for j := range row {
		x := math.Float32frombits(binary.LittleEndian.Uint32(rowBytes[4*j:]))
		row[j] = x
		ss[j&3] += float64(x) * float64(x)
	}
	// Rows were unit length when written; anything else (including NaN,
	// which fails the comparison) means the bytes are not ours.
	if !(math.Abs((ss[0]+ss[1])+(ss[2]+ss[3])-1) <= 1e-3) {
		return corrupt("vector is not unit length")
	}
	return nil
}

// readCollectionV1 reads the first format and rebuilds the collection
// (and its graph) from its rows.
func readCollectionV1(r *snapReader) (string, *Collection, error) {
	name, dim, err := readName(r)
	if err != nil {
		return "", nil, err
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
	ids := make([]string, n)
	metas := make([]json.RawMessage, n)
	seen := make(map[string]bool, n)
	for i := range n {
		if ids[i], metas[i], err = readIDMeta(r, name, i, false); err != nil {
			return "", nil, err
		}
		if seen[ids[i]] {
			return "", nil, corrupt("collection %q: id %q appears twice", name, ids[i])
		}
		seen[ids[i]] = true
	}
	c, _ := NewCollection(dim)
	c.Grow(n)
	row, rowBytes := make([]float32, dim), make([]byte, 4*dim)
	for i := range n {
		if err := readFloatRow(r, row, rowBytes); err != nil {
			return "", nil, fmt.Errorf("collection %q row %d: %w", name, i, err)
		}
		if err := c.put(ids[i], row, metas[i], false); err != nil {
			return "", nil, err
		}
	}
	return name, c, nil
}

func readCollection(r *snapReader) (string, *Collection, error) {
	name, dim, err := readName(r)
	if err != nil {
		return "", nil, err
	}
	pl, err := r.u16()
	if err != nil {
		return "", nil, err
	}
	pb := make([]byte, pl)
	if err := r.full(pb); err != nil {
		return "", nil, err
	}
	var p Params
	if err := json.Unmarshal(pb, &p); err != nil {
		return "", nil, corrupt("collection %q: parameters: %v", name, err)
	}
	c, err := NewCollectionParams(dim, p)
	if err != nil || c.params != p {
		return "", nil, corrupt("collection %q: parameters %s", name, pb)
	}
	used32, err := r.u32()
	if err != nil {
		return "", nil, err
	}
	entry, err := r.u64()
	if err != nil {
		return "", nil, err
	}
	// Every slot costs at least 6 bytes of state and lengths plus its vector.
	perSlot := 6 + int64(dim)
	if p.Storage == StorageFloat32 {
		perSlot = 6 + 4*int64(dim)
	}
	if int64(used32) > r.left/perSlot || used32 >= maxSlots {
		return "", nil, corrupt("collection %q: %d slots do not fit in the file", name, used32)
	}
	used := int(used32)
	c.realloc(used)
	c.used.Store(used32)
	for i := range used {
		st, err := r.u8()
		if err != nil {
			return "", nil, err
		}
		level, err := r.u8()
		if err != nil {
			return "", nil, err
		}
		if (st != byte(slotLive) && st != byte(slotDeleted)) || level > maxLevel || (c.g == nil && level != 0) {
			return "", nil, corrupt("collection %q slot %d: state %d level %d", name, i, st, level)
		}
		id, m, err := readIDMeta(r, name, i, st == byte(slotDeleted))
		if err != nil {
			return "", nil, err
		}
		if st == byte(slotLive) {
			if id == "" {
				return "", nil, corrupt("collection %q slot %d: live without an id", name, i)
			}
			if _, dup := c.rows[id]; dup {
				return "", nil, corrupt("collection %q: id %q appears twice", name, id)
			}
			c.rows[id] = uint32(i)
			c.count++
		} else {
			if id != "" || m != nil {
				return "", nil, corrupt("collection %q slot %d: free slot with data", name, i)
			}
			c.free = append(c.free, uint32(i))
		}
		c.state[i].Store(uint32(st))
		c.ids[i], c.meta[i] = id, m
		if c.g != nil {
			c.g.levels[i] = level
			if level > 0 {
				c.g.upper[i] = make([]uint32, int(level)*(1+c.g.m))
			}
		}
	}
	d := dim
	if p.Storage == StorageInt8 {
		buf := make([]byte, d)
		for i := range used {
			if err := r.full(buf); err != nil {
				return "", nil, err
			}
			for j, x := range buf {
				c.codes[i*d+j] = int8(x)
			}
		}
		if err := r.full(c.resid[:used*residBytes(d)]); err != nil {
			return "", nil, err
		}
		for i := range used {
			x, err := r.u32()
			if err != nil {
				return "", nil, err
			}
			if c.scale[i] = math.Float32frombits(x); !(c.scale[i] >= 0 && c.scale[i] <= 1) {
				return "", nil, corrupt("collection %q slot %d: scale %v", name, i, c.scale[i])
			}
		}
	} else {
		rowBytes := make([]byte, 4*d)
		for i := range used {
			if err := readFloatRow(r, c.vecs[i*d:(i+1)*d], rowBytes); err != nil {
				return "", nil, fmt.Errorf("collection %q slot %d: %w", name, i, err)
			}
		}
	}
	if c.g == nil {
		if entry != noEntry {
			return "", nil, corrupt("collection %q: a flat index with a graph entry", name)
		}
		return name, c, nil
	}
	if entry != noEntry && (uint32(entry) >= used32 || entry>>32 != uint64(c.g.levels[uint32(entry)])) {
		return "", nil, corrupt("collection %q: graph entry %x", name, entry)
	}
	if entry == noEntry && c.count > 0 {
		return "", nil, corrupt("collection %q: items but no graph entry", name)
	}
	c.g.entry.Store(entry)
	for i := range used {
		for l := 0; l <= int(c.g.levels[i]); l++ {
			n, err := r.u8()
			if err != nil {
				return "", nil, err
			}
			list := c.g.list(uint32(i), l)
			if int(n) > len(list)-1 {
				return "", nil, corrupt("collection %q slot %d: %d links at level %d", name, i, n, l)
			}
			list[0] = uint32(n)
			for j := 1; j <= int(n); j++ {
				x, err := r.u32()
				if err != nil {
					return "", nil, err
				}
				if x >= used32 || int(c.g.levels[x]) < l {
					return "", nil, corrupt("collection %q slot %d: link to %d", name, i, x)
				}
				list[j] = x
			}
		}
	}
	// Each draw so far advanced the level generator once; carry on from there.
	c.g.draws.Store(uint64(used) * 0x9e3779b97f4a7c15)
	return name, c, nil
}
