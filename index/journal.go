package index

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Durability. A store opened with OpenStore(path) keeps, beside the
// snapshot file at path, an append-only log of every change since:
// path.log.N, where N counts up. Each change is written to the log (one
// write(2) call, so it is in the kernel's hands) before the request that
// made it is answered; a background goroutine fsyncs the log every
// SyncInterval. A killed process therefore loses nothing it acknowledged,
// and a machine that loses power loses at most the last SyncInterval.
//
// When the log outgrows the snapshot (and at least CompactBytes), the
// store compacts: it starts log N+1, writes a new snapshot that records
// "logs from N+1 on are not included" next to path and renames it into
// place, then deletes the older logs. Changes made while the snapshot is
// being written land in log N+1 and may also be in the snapshot; replaying
// them is harmless because every record sets an item's or a collection's
// whole state.
//
// Log record: length uint32, CRC-32C uint32 of the payload, payload:
//
//	op uint8, nameLen uint8, name
//	opCreate: dim uint32, paramsLen uint16, params (JSON)
//	opDrop:   nothing more
//	opUpsert: idLen uint16, id, metaLen uint16, meta, dim float32 (unit vector)
//	opDelete: idLen uint16, id
//
// A record cut short at the end of the last log (a crash mid-write) is
// dropped; damage anywhere else fails the load with ErrCorrupt.

const (
	opCreate byte = 1 + iota
	opDrop
	opUpsert
	opDelete
)

// SyncInterval is how often the log is fsynced.
const SyncInterval = 200 * time.Millisecond

// CompactBytes is the least log size that triggers compaction.
var CompactBytes int64 = 64 << 20

// maxRecord bounds a record's payload: an upsert of MaxDim floats with the
// longest id and metadata, plus headers.
const maxRecord = 4*MaxDim + MaxIDBytes + MaxMetadataBytes + 1024

type journal struct {
	path string
	log  *slog.Logger

	mu       sync.Mutex
	f        *os.File
	seq      uint64
	size     int64
	dirty    bool
	snapSize int64
	buf      []byte
	err      error // sticky: once a write fails, the store refuses writes

	compactMu sync.Mutex
	stop      chan struct{}
	done      chan struct{}
}

// ErrStorage: the log could not be written; the store refuses writes.
var ErrStorage = errors.New("index: storage failure")

// OpenStore loads the snapshot at path and replays the logs after it (an
// absent snapshot is an empty store), then logs every change. Close it to
// stop the background sync and write a final snapshot.
func OpenStore(path string, limits Limits, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s, seq, err := loadSnapshot(path)
	var snapSize int64
	switch {
	case errors.Is(err, fs.ErrNotExist):
		s, seq = NewStore(), 0
	case err != nil:
		return nil, err
	default:
		if st, err := os.Stat(path); err == nil {
			snapSize = st.Size()
		}
	}
	seqs, err := logSeqs(path)
	if err != nil {
		return nil, err
	}
	next := seq
	replayed := 0
	for i, n := range seqs {
		if n < seq {
			os.Remove(logName(path, n)) // covered by the snapshot; a compaction was cut short
			continue
		}
		r, err := s.replay(logName(path, n), i == len(seqs)-1)
		if err != nil {
			return nil, err
		}
		replayed += r
		next = n + 1
	}
	s.limits = limits
	j := &journal{path: path, log: log, snapSize: snapSize, stop: make(chan struct{}), done: make(chan struct{})}
	if j.f, err = os.OpenFile(logName(path, next), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600); err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	j.seq = next
	if err := syncDir(filepath.Dir(path)); err != nil {
		j.f.Close()
		return nil, fmt.Errorf("index: %w", err)
	}
	s.j = j
	log.Info("index loaded", "path", path, "collections", len(s.cols), "log_records_replayed", replayed, "memory_bytes", s.mem.Load())
	go s.syncLoop()
	return s, nil
}

func logName(path string, seq uint64) string { return path + ".log." + strconv.FormatUint(seq, 10) }

// logSeqs lists the log numbers beside path, in order.
func logSeqs(path string) ([]uint64, error) {
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	prefix := filepath.Base(path) + ".log."
	var seqs []uint64
	for _, e := range entries {
		if rest, ok := strings.CutPrefix(e.Name(), prefix); ok {
			if n, err := strconv.ParseUint(rest, 10, 64); err == nil {
				seqs = append(seqs, n)
			}
		}
	}
	slices.Sort(seqs)
	return seqs, nil
}

// Close stops the background sync, writes a final snapshot and removes the
// logs it covers. A store without a log just returns.
func (s *Store) Close() error {
	j := s.j
	if j == nil {
		return nil
	}
	close(j.stop)
	<-j.done
	err := s.compact()
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.err == nil {
		j.err = fmt.Errorf("%w: the store is closed", ErrStorage)
	}
	return errors.Join(err, j.f.Close())
}

func (s *Store) syncLoop() {
	j := s.j
	defer close(j.done)
	t := time.NewTicker(SyncInterval)
	defer t.Stop()
	for {
		select {
		case <-j.stop:
			j.sync()
			return
		case <-t.C:
		}
		j.sync()
		j.mu.Lock()
		due := j.size >= max(CompactBytes, j.snapSize)
		j.mu.Unlock()
		if due {
			if err := s.compact(); err != nil {
				j.log.Error("index compaction failed", "err", err)
			}
		}
	}
}

func (j *journal) sync() {
	j.mu.Lock()
	defer j.mu.Unlock()
	if !j.dirty || j.err != nil {
		return
	}
	if err := j.f.Sync(); err != nil {
		j.fail(err)
		return
	}
	j.dirty = false
}

// fail makes a write error sticky. Caller holds j.mu.
func (j *journal) fail(err error) {
	j.err = fmt.Errorf("%w: %v", ErrStorage, err)
	j.log.Error("index log write failed; refusing further writes", "err", err)
}

// compact writes a snapshot and removes the logs it covers.
func (s *Store) compact() error {
	j := s.j
	j.compactMu.Lock()
	defer j.compactMu.Unlock()
	start := time.Now()
	j.mu.Lock()
	if j.err != nil {
		j.mu.Unlock()
		return j.err
	}
	next := j.seq + 1
	f, err := os.OpenFile(logName(j.path, next), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		j.mu.Unlock()
		return fmt.Errorf("index: compaction: %w", err)
	}
	old := j.f
	oldErr := old.Sync()
	j.f, j.seq, j.size, j.dirty = f, next, 0, false
	j.mu.Unlock()
	if err := errors.Join(oldErr, old.Close()); err != nil {
		return fmt.Errorf("index: compaction: %w", err)
	}
	size, err := s.snapshot(j.path, next)
	if err != nil {
		return err
	}
	seqs, _ := logSeqs(j.path)
	for _, n := range seqs {
		if n < next {
			os.Remove(logName(j.path, n))
		}
	}
	j.mu.Lock()
	j.snapSize = size
	j.mu.Unlock()
	j.log.Info("index compacted", "snapshot_bytes", size, "seconds", time.Since(start).Seconds())
	return nil
}

// append writes one record. Caller holds the lock that orders this change
// against others to the same key (the collection's alloc, or the store's
// mu for collection records).
func (j *journal) append(payload func(b []byte) []byte) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.err != nil {
		return j.err
	}
	b := append(j.buf[:0], make([]byte, 8)...)
	b = payload(b)
	binary.LittleEndian.PutUint32(b[0:], uint32(len(b)-8))
	binary.LittleEndian.PutUint32(b[4:], crc32.Checksum(b[8:], castagnoli))
	if _, err := j.f.Write(b); err != nil {
		j.fail(err)
		return j.err
	}
	j.buf = b[:0]
	j.size += int64(len(b))
	j.dirty = true
	return nil
}

func appendName(b []byte, op byte, name string) []byte {
	return append(append(b, op, byte(len(name))), name...)
}

func appendStr16(b []byte, s []byte) []byte {
	return append(binary.LittleEndian.AppendUint16(b, uint16(len(s))), s...)
}

func (s *Store) logCreate(name string, c *Collection) error {
	if s.j == nil {
		return nil
	}
	params, _ := json.Marshal(c.params)
	return s.j.append(func(b []byte) []byte {
		b = appendName(b, opCreate, name)
		b = binary.LittleEndian.AppendUint32(b, uint32(c.dim))
		return appendStr16(b, params)
	})
}

func (s *Store) logDrop(name string) error {
	if s.j == nil {
		return nil
	}
	return s.j.append(func(b []byte) []byte { return appendName(b, opDrop, name) })
}

func (s *Store) logUpsert(c *Collection, id string, row []float32, meta json.RawMessage) error {
	if s.j == nil {
		return nil
	}
	return s.j.append(func(b []byte) []byte {
		b = appendName(b, opUpsert, c.name)
		b = appendStr16(b, []byte(id))
		b = appendStr16(b, meta)
		for _, x := range row {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
		}
		return b
	})
}

func (s *Store) logDelete(c *Collection, id string) error {
	if s.j == nil {
		return nil
	}
	return s.j.append(func(b []byte) []byte {
		return appendStr16(appendName(b, opDelete, c.name), []byte(id))
	})
}

// replay applies a log's records and returns how many. In the last log a
// damaged tail is cut off (a crash mid-write); elsewhere it is ErrCorrupt.
func (s *Store) replay(path string, last bool) (int, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return 0, fmt.Errorf("index: %w", err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	var off int64
	n := 0
	var hdr [8]byte
	for {
		_, err := io.ReadFull(r, hdr[:])
		if err == io.EOF {
			return n, nil
		}
		size := binary.LittleEndian.Uint32(hdr[:])
		var payload []byte
		if err == nil {
			if size > maxRecord {
				err = errors.New("record too long")
			} else {
				payload = make([]byte, size)
				if _, err = io.ReadFull(r, payload); err == nil && crc32.Checksum(payload, castagnoli) != binary.LittleEndian.Uint32(hdr[4:]) {
					err = errors.New("checksum mismatch")
				}
			}
		}
		if err != nil {
			if !last {
				return n, fmt.Errorf("%w: log %s at byte %d: %v", ErrCorrupt, path, off, err)
			}
			// A torn final write: drop it so the next start reads cleanly.
			if terr := f.Truncate(off); terr != nil {
				return n, fmt.Errorf("index: %w", terr)
			}
			return n, f.Sync()
		}
		if err := s.apply(payload); err != nil {
			return n, fmt.Errorf("%w: log %s at byte %d: %v", ErrCorrupt, path, off, err)
		}
		off += 8 + int64(size)
		n++
	}
}

// apply replays one record. Records for items of a collection that no
// longer exists are skipped: a later record dropped it.
func (s *Store) apply(p []byte) error {
	if len(p) < 2 || len(p) < 2+int(p[1]) {
		return errors.New("short record")
	}
	op, name := p[0], string(p[2:2+int(p[1])])
	p = p[2+int(p[1]):]
	if !ValidName(name) {
		return fmt.Errorf("bad collection name %q", name)
	}
	str16 := func() ([]byte, error) {
		if len(p) < 2 || len(p) < 2+int(binary.LittleEndian.Uint16(p)) {
			return nil, errors.New("short record")
		}
		n := int(binary.LittleEndian.Uint16(p))
		v := p[2 : 2+n]
		p = p[2+n:]
		return v, nil
	}
	switch op {
	case opCreate:
		if len(p) < 4 {
			return errors.New("short record")
		}
		dim := int(binary.LittleEndian.Uint32(p))
		p = p[4:]
		pj, err := str16()
		if err != nil {
			return err
		}
		var params Params
		if err := json.Unmarshal(pj, &params); err != nil {
			return err
		}
		if old, ok := s.cols[name]; ok && (old.dim != dim || old.params != params) {
			// The snapshot holds a later collection of this name; the drop
			// record that separates them follows in this log.
			return nil
		}
		if _, ok := s.cols[name]; !ok {
			c, err := NewCollectionParams(dim, params)
			if err != nil {
				return err
			}
			s.attach(name, c)
		}
	case opDrop:
		if c, ok := s.cols[name]; ok {
			c.dropped = true
			delete(s.cols, name)
			s.mem.Add(-c.memBytes())
		}
	case opUpsert, opDelete:
		id, err := str16()
		if err != nil {
			return err
		}
		c, ok := s.cols[name]
		if !ok {
			return nil
		}
		if op == opDelete {
			if err := c.remove(string(id), false); err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
			return nil
		}
		meta, err := str16()
		if err != nil {
			return err
		}
		if len(p) != 4*c.dim {
			return nil // a record for an earlier collection of this name
		}
		row := make([]float32, c.dim)
		for i := range row {
			row[i] = math.Float32frombits(binary.LittleEndian.Uint32(p[4*i:]))
		}
		if err := checkStoredID(string(id)); err != nil {
			return err
		}
		if _, err := copyMeta(meta); err != nil {
			return err
		}
		if c.holds(string(id), row, meta) {
			return nil // already in the snapshot
		}
		return c.put(string(id), row, slices.Clone(json.RawMessage(meta)), false)
	default:
		return fmt.Errorf("unknown record type %d", op)
	}
	return nil
}
