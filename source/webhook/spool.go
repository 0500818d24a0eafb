// Package webhook is the source that receives kube-apiserver's audit
// webhook backend: an HTTP handler validates each EventList whole, appends
// its events to a durable spool (segment files of JSON lines, one event per
// line) and answers 200 only once they are fsynced; every output then
// reads the spool like a file, from its own Position, and a segment is
// deleted once every output has committed past it.
package webhook

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The errors of Append.
var (
	// ErrFull says the spool holds max_bytes: the client should retry
	// later (429). Nothing spooled is dropped to make room.
	ErrFull = errors.New("webhook: the spool is full (outputs are down or slow)")
	// ErrClosed says the spool is closed (shutting down: 503).
	ErrClosed = errors.New("webhook: the spool is closed")
)

const (
	segSuffix = ".jsonl"
	idFile    = "spool-id"
	lockFile  = "lock"
	// maxSegBytes is the size a segment is rotated at, at most; smaller
	// spools rotate at an eighth of max_bytes, so that a spool that is
	// read is freed segment by segment.
	maxSegBytes = 64 << 20
	minSegBytes = 64 << 10
)

// segment is one file of the spool: lines from base (a logical offset:
// bytes ever appended to the spool before its first line) to the next
// segment's base, or to the spool's end for the last one.
type segment struct {
	base int64
	path string
	mod  time.Time // when it was last written (as found at open)
}

// SpoolStats are the spool's counters, read concurrently by the metrics.
type SpoolStats struct {
	Appends    atomic.Int64 // appends fsynced and acknowledged
	Fsyncs     atomic.Int64 // fsyncs (one per group of concurrent appends)
	Full       atomic.Int64 // appends refused: the spool was full
	Failed     atomic.Int64 // appends that failed to write or fsync
	TornBytes  atomic.Int64 // bytes of a torn last line cut at open
	FsyncNanos Histogram    // fsync durations
}

// Spool is a directory of segment files holding the events a webhook
// input accepted, in order, until every output has read past them.
//
// Appends write under mu and then share an fsync (group commit): the
// first appender to reach syncMu fsyncs everything written so far, and
// those who wrote meanwhile find their bytes synced when they get it.
// Readers only ever see fsynced bytes, which end on a line boundary.
type Spool struct {
	dir      string
	id       string
	maxBytes int64
	segBytes int64
	log      *slog.Logger
	lock     *os.File
	Stats    SpoolStats

	syncMu sync.Mutex // held across an fsync, and a rotation; before mu

	mu       sync.Mutex
	segs     []segment // by base; the last is the one appended to
	f        *os.File  // the last segment, open for appending
	fSize    int64     // its size
	end      int64     // logical offset just past the last byte written
	closed   bool
	broken   error         // a write could not be undone: no more appends
	marks    []mark        // when bytes were appended, coarsely (oldest unacknowledged age)
	notifyCh chan struct{} // closed when synced grows, then replaced

	synced atomic.Int64 // logical offset up to which everything is fsynced
	first  atomic.Int64 // base of the first segment
	nsegs  atomic.Int64
}

// mark says that the bytes from off on were appended at t or later.
type mark struct {
	off int64
	t   time.Time
}

// OpenSpool opens (or creates) the spool in dir. It takes an exclusive
// lock on the directory, and cuts a torn last line a crash during an
// append left (never acknowledged: it was not fsynced).
func OpenSpool(dir string, maxBytes int64, log *slog.Logger) (*Spool, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	s := &Spool{dir: dir, maxBytes: maxBytes, log: log, lock: lock, notifyCh: make(chan struct{})}
	s.segBytes = min(maxSegBytes, max(minSegBytes, maxBytes/8))
	if err := s.open(); err != nil {
		s.closeFiles()
		return nil, err
	}
	return s, nil
}

func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		pid, _ := io.ReadAll(io.LimitReader(f, 32))
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("spool: %s is in use by another audittail (pid %s): give each agent its own spool.dir", dir, strings.TrimSpace(string(pid)))
		}
		return nil, fmt.Errorf("spool: cannot lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}

func (s *Spool) open() error {
	id, err := os.ReadFile(filepath.Join(s.dir, idFile))
	switch {
	case errors.Is(err, os.ErrNotExist):
		var b [8]byte
		_, _ = rand.Read(b[:])
		id = []byte(hex.EncodeToString(b[:]))
		if err := writeSynced(filepath.Join(s.dir, idFile), append(id, '\n')); err != nil {
			return fmt.Errorf("spool: %w", err)
		}
	case err != nil:
		return fmt.Errorf("spool: %w", err)
	}
	s.id = strings.TrimSpace(string(id))
	if s.id == "" || strings.ContainsAny(s.id, " \t\"\\") {
		return fmt.Errorf("spool: %s is corrupt (%q): remove it only if the spool is empty", filepath.Join(s.dir, idFile), id)
	}

	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if name == idFile || name == lockFile || strings.HasSuffix(name, ".tmp") {
			continue
		}
		base, ok := parseSegName(name)
		if !ok || !e.Type().IsRegular() {
			s.log.Warn("spool: ignoring a file that is not a segment", "file", filepath.Join(s.dir, name))
			continue
		}
		info, err := e.Info()
		if err != nil {
			return fmt.Errorf("spool: %w", err)
		}
		s.segs = append(s.segs, segment{base: base, path: filepath.Join(s.dir, name), mod: info.ModTime()})
	}
	slices.SortFunc(s.segs, func(a, b segment) int { return int(a.base - b.base) })
	// Every segment but the last must end where the next begins.
	for i := 0; i+1 < len(s.segs); i++ {
		info, err := os.Stat(s.segs[i].path)
		if err != nil {
			return fmt.Errorf("spool: %w", err)
		}
		if end := s.segs[i].base + info.Size(); end > s.segs[i+1].base {
			return fmt.Errorf("spool: segments %s and %s overlap (%d bytes): the spool was changed by hand; move the later one away to keep the rest", s.segs[i].path, s.segs[i+1].path, end-s.segs[i+1].base)
		} else if end < s.segs[i+1].base {
			s.log.Warn("spool: a segment is shorter than the next one's name says (the spool was changed by hand); the missing bytes are skipped",
				"segment", s.segs[i].path, "missing_bytes", s.segs[i+1].base-end)
		}
	}
	if len(s.segs) == 0 {
		if err := s.create(0); err != nil {
			return err
		}
	} else {
		last := s.segs[len(s.segs)-1]
		f, err := os.OpenFile(last.path, os.O_RDWR|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("spool: %w", err)
		}
		s.f = f
		size, torn, err := cutTorn(f)
		if err != nil {
			return fmt.Errorf("spool: %s: %w", last.path, err)
		}
		if torn > 0 {
			s.Stats.TornBytes.Add(torn)
			s.log.Warn("spool: cut the torn last line of a crash during an append (it was never acknowledged)", "segment", last.path, "bytes", torn)
		}
		s.fSize = size
		s.end = last.base + size
		for _, g := range s.segs {
			s.marks = append(s.marks, mark{g.base, g.mod})
		}
	}
	s.synced.Store(s.end)
	s.first.Store(s.segs[0].base)
	s.nsegs.Store(int64(len(s.segs)))
	return nil
}

func segName(base int64) string { return fmt.Sprintf("%020d%s", base, segSuffix) }

func parseSegName(name string) (int64, bool) {
	digits, ok := strings.CutSuffix(name, segSuffix)
	if !ok || len(digits) != 20 {
		return 0, false
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	return n, err == nil && n >= 0
}

// cutTorn truncates f after its last '\n' and returns its size and the
// bytes cut.
func cutTorn(f *os.File) (size, cut int64, err error) {
	info, err := f.Stat()
	if err != nil {
		return 0, 0, err
	}
	size = info.Size()
	buf := make([]byte, 64<<10)
	end := size
	for end > 0 {
		n := int64(len(buf))
		if end < n {
			n = end
		}
		if _, err := f.ReadAt(buf[:n], end-n); err != nil {
			return 0, 0, err
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			end = end - n + int64(i) + 1
			break
		}
		end -= n
	}
	if end == size {
		return size, 0, nil
	}
	if err := f.Truncate(end); err != nil {
		return 0, 0, err
	}
	if err := f.Sync(); err != nil {
		return 0, 0, err
	}
	return end, size - end, nil
}

// create starts a new, empty segment at base and makes it the one
// appended to. Called with mu held (or before the spool is shared).
func (s *Spool) create(base int64) error {
	path := filepath.Join(s.dir, segName(base))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	if err := syncDir(s.dir); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("spool: %w", err)
	}
	s.f, s.fSize = f, 0
	s.segs = append(s.segs, segment{base: base, path: path, mod: time.Now()})
	s.nsegs.Store(int64(len(s.segs)))
	return nil
}

// rotate fsyncs and closes the last segment and starts the next. Called
// with syncMu and mu held.
func (s *Spool) rotate() error {
	if err := s.fsync(s.f); err != nil {
		return err
	}
	old := s.f
	if err := s.create(s.end); err != nil {
		return err
	}
	old.Close()
	s.publishLocked(s.end)
	return nil
}

// ID identifies the spool: positions name it, so that a spool emptied by
// hand (a new volume) is not read from offsets of the old one.
func (s *Spool) ID() string { return s.id }

// Dir returns the spool's directory.
func (s *Spool) Dir() string { return s.dir }

// Bytes returns the bytes the spool holds.
func (s *Spool) Bytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.end - s.first.Load()
}

// Segments returns the number of segment files.
func (s *Spool) Segments() int { return int(s.nsegs.Load()) }

// Synced returns the logical offset up to which the spool is fsynced.
func (s *Spool) Synced() int64 { return s.synced.Load() }

// WouldFit reports whether n more bytes fit now (the handler's early
// answer before it reads a body).
func (s *Spool) WouldFit(n int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.end-s.first.Load()+max(n, 0) <= s.maxBytes
}

// Append writes lines (complete lines, each ending in '\n') and returns
// once they are fsynced: ErrFull when they do not fit in max_bytes now,
// ErrClosed once the spool is closed, or the error of a write or fsync
// (nothing of lines is then left in the spool, or the spool refuses every
// further append until a restart cuts what could not be undone).
func (s *Spool) Append(lines []byte) error {
	if len(lines) == 0 {
		return nil
	}
	if lines[len(lines)-1] != '\n' {
		panic("webhook: Append of a partial line")
	}
	n := int64(len(lines))
	s.mu.Lock()
	for {
		switch {
		case s.closed:
			s.mu.Unlock()
			return ErrClosed
		case s.broken != nil:
			s.mu.Unlock()
			return s.broken
		case s.end-s.first.Load()+n > s.maxBytes:
			s.mu.Unlock()
			s.Stats.Full.Add(1)
			return ErrFull
		}
		if s.fSize == 0 || s.fSize+n <= s.segBytes {
			break
		}
		// Rotate: that takes syncMu, which comes before mu.
		s.mu.Unlock()
		s.syncMu.Lock()
		s.mu.Lock()
		var err error
		if !s.closed && s.broken == nil && s.fSize > 0 && s.fSize+n > s.segBytes {
			err = s.rotate()
		}
		s.syncMu.Unlock()
		if err != nil {
			s.mu.Unlock()
			s.Stats.Failed.Add(1)
			return err
		}
	}
	w, err := s.f.Write(lines)
	if err != nil {
		s.Stats.Failed.Add(1)
		if w > 0 {
			// Undo the partial write, so that the next append does not
			// glue onto half a line.
			if terr := s.f.Truncate(s.fSize); terr != nil {
				s.broken = fmt.Errorf("webhook: the spool cannot take appends until a restart: a failed write could not be undone: %w", terr)
			}
		}
		s.mu.Unlock()
		return fmt.Errorf("webhook: cannot write to the spool: %w", err)
	}
	s.fSize += n
	s.end += n
	if len(s.marks) == 0 || time.Since(s.marks[len(s.marks)-1].t) >= time.Second {
		s.marks = append(s.marks, mark{s.end - n, time.Now()})
	}
	mine := s.end
	s.mu.Unlock()
	if err := s.syncTo(mine); err != nil {
		return err
	}
	s.Stats.Appends.Add(1)
	return nil
}

// syncTo returns once the spool is fsynced up to off: the first caller
// fsyncs for everyone who wrote before it started.
func (s *Spool) syncTo(off int64) error {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	if s.synced.Load() >= off {
		return nil
	}
	s.mu.Lock()
	f, target := s.f, s.end
	s.mu.Unlock()
	// f cannot be rotated away meanwhile: rotation takes syncMu.
	if err := s.fsync(f); err != nil {
		s.Stats.Failed.Add(1)
		// What was written may or may not be on disk: never acknowledge
		// it, and stop appending (the kernel may have dropped the pages).
		s.mu.Lock()
		if s.broken == nil {
			s.broken = fmt.Errorf("webhook: the spool cannot take appends until a restart: fsync failed: %w", err)
		}
		s.mu.Unlock()
		return fmt.Errorf("webhook: cannot fsync the spool: %w", err)
	}
	s.publish(target)
	return nil
}

func (s *Spool) fsync(f *os.File) error {
	t := time.Now()
	err := f.Sync()
	s.Stats.Fsyncs.Add(1)
	s.Stats.FsyncNanos.Observe(time.Since(t))
	return err
}

// publish makes everything up to off visible to readers.
func (s *Spool) publish(off int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.publishLocked(off)
}

func (s *Spool) publishLocked(off int64) {
	if off <= s.synced.Load() {
		return
	}
	s.synced.Store(off)
	close(s.notifyCh)
	s.notifyCh = make(chan struct{})
}

// changed returns a channel closed when more is synced.
func (s *Spool) changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.notifyCh
}

// Trim deletes the segments that end at or before off, the lowest
// position every output has committed (and fsynced in the checkpoint). A
// last segment read to its end is rotated first, so that a drained spool
// shrinks to nothing.
func (s *Spool) Trim(off int64) error {
	s.syncMu.Lock()
	s.mu.Lock()
	if !s.closed && s.broken == nil && s.fSize > 0 && off >= s.end && s.synced.Load() == s.end {
		if err := s.rotate(); err != nil {
			s.mu.Unlock()
			s.syncMu.Unlock()
			return err
		}
	}
	s.syncMu.Unlock()
	var gone []segment
	for len(s.segs) > 1 && s.segs[1].base <= off {
		gone = append(gone, s.segs[0])
		s.segs = s.segs[1:]
	}
	s.first.Store(s.segs[0].base)
	s.nsegs.Store(int64(len(s.segs)))
	i := 0
	for i+1 < len(s.marks) && s.marks[i+1].off <= s.first.Load() {
		i++
	}
	s.marks = s.marks[i:]
	s.mu.Unlock()
	var errs error
	for _, g := range gone {
		if err := os.Remove(g.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = errors.Join(errs, fmt.Errorf("spool: %w", err))
		}
	}
	if len(gone) > 0 {
		if err := syncDir(s.dir); err != nil {
			errs = errors.Join(errs, fmt.Errorf("spool: %w", err))
		}
	}
	return errs
}

// OldestAge returns how long ago the first byte after off was appended
// (a lower bound after a restart: a segment's time is its last write), or
// 0 when off is at the end.
func (s *Spool) OldestAge(off int64, now time.Time) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if off >= s.end || len(s.marks) == 0 {
		return 0
	}
	i, found := slices.BinarySearchFunc(s.marks, off, func(m mark, off int64) int {
		switch {
		case m.off < off:
			return -1
		case m.off > off:
			return 1
		}
		return 0
	})
	if !found {
		i-- // the mark before off covers it
	}
	i = max(i, 0)
	return max(now.Sub(s.marks[i].t), 0)
}

// segmentAt returns the segment holding off, and where it ends (the next
// segment's base, or -1 for the last one). ok is false when off is before
// the first segment.
func (s *Spool) segmentAt(off int64) (g segment, end int64, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, found := slices.BinarySearchFunc(s.segs, off, func(g segment, off int64) int { return int(g.base - off) })
	if !found {
		i--
	}
	if i < 0 {
		return segment{}, 0, false
	}
	end = -1
	if i+1 < len(s.segs) {
		end = s.segs[i+1].base
	}
	return s.segs[i], end, true
}

// Close fsyncs and closes the spool; appends then fail with ErrClosed.
func (s *Spool) Close() error {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var err error
	if s.f != nil && s.broken == nil {
		err = s.f.Sync()
	}
	s.closeFiles()
	return err
}

func (s *Spool) closeFiles() {
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
	if s.lock != nil {
		s.lock.Close() // releases the flock
		s.lock = nil
	}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func writeSynced(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

// Histogram counts durations in fixed buckets (for a Prometheus
// histogram), without locks.
type Histogram struct {
	counts [len(HistogramBuckets) + 1]atomic.Int64
	sum    atomic.Int64 // nanoseconds
}

// HistogramBuckets are the upper bounds, in seconds, of the fsync
// duration buckets.
var HistogramBuckets = [...]float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}

// Observe counts d.
func (h *Histogram) Observe(d time.Duration) {
	sec := d.Seconds()
	i := 0
	for i < len(HistogramBuckets) && sec > HistogramBuckets[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sum.Add(int64(d))
}

// Snapshot returns the cumulative bucket counts (by upper bound), the
// total count and the sum in seconds.
func (h *Histogram) Snapshot() (buckets map[float64]uint64, count uint64, sum float64) {
	buckets = make(map[float64]uint64, len(HistogramBuckets))
	var cum uint64
	for i, ub := range HistogramBuckets {
		cum += uint64(h.counts[i].Load())
		buckets[ub] = cum
	}
	cum += uint64(h.counts[len(HistogramBuckets)].Load())
	return buckets, cum, float64(h.sum.Load()) / 1e9
}
