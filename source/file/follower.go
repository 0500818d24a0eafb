package file

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

const (
	readSize = 1 << 20 // bytes per read(2)
)

// recentSet remembers the fingerprints of the last files read to the end,
// so that a clock that puts backup names in the future (lumberjack's
// LocalTime, a skewed writer) cannot make the follower read them again.
type recentSet struct {
	fps  [64]fingerprint
	next int
}

func (r *recentSet) add(fp fingerprint) {
	if fp.ready() && !r.has(fp) {
		r.fps[r.next%len(r.fps)] = fp
		r.next++
	}
}

func (r *recentSet) len() int { return min(r.next, len(r.fps)) }

// last returns up to n of the most recently added fingerprints.
func (r *recentSet) last(n int) []fingerprint {
	n = min(n, r.len())
	if n == 0 {
		return nil
	}
	out := make([]fingerprint, 0, n)
	for i := 1; i <= n; i++ {
		out = append(out, r.fps[(r.next-i)%len(r.fps)])
	}
	return out
}

func (r *recentSet) has(fp fingerprint) bool {
	for _, x := range r.fps {
		if x.ready() && x == fp {
			return true
		}
	}
	return false
}

// doneKept is how many finished files a Cursor remembers.
const doneKept = 4

// copySlack is how much earlier than the live file's open a copytruncate
// copy may be named and still be a copy of what the file held since.
const copySlack = 10 * time.Second

// liveOnly as a floor admits no backup: only the live file comes next.
var liveOnly = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)

// source is one open file of an input: the live file or a backup.
type openFile struct {
	placed // ref, fp, order
	f      *os.File
	r      io.Reader // f, or a gzip reader over f
	// base is the file offset (decompressed) of the follower's buf[0].
	base int64
	// size is the largest size seen (plain files only).
	size int64
	// fpChecked is when the live file's head was last compared with fp.
	fpChecked time.Time
	// With capped, reading stops at limit (backfill reads a file that may
	// still grow up to its size at start).
	capped bool
	limit  int64
}

func (s *openFile) close() {
	if s != nil && s.f != nil {
		s.f.Close()
		s.f = nil
	}
}

// follower reads one input. It finds where its cursor points, reads the
// files in rotation order (holding a renamed file open until it is read to
// the end), splits complete lines in place and hands them to the chunker.
// It runs in one goroutine.
type follower struct {
	name   logName
	input  string
	cfg    Config
	log    *slog.Logger
	stats  *Stats
	chunks *chunker

	cur     *openFile
	pending []Ref // backups known to come after cur, oldest first
	// When no file is open, prev is the last file read (nil if none) and
	// floor the earliest rotation time of a backup still to read.
	prev       *openFile
	floor      time.Time
	done       recentSet // fingerprints of files this process finished
	lastBackup time.Time // rotation time of the newest backup read (or resumed)
	listedAt   time.Time // when pending was last refreshed
	fps        fpCache   // fingerprints of the backups listed

	// lastTS is the stageTimestamp of the last event handed out (or of
	// the resumed cursor); gap is data lost since, reported once the next
	// line is read.
	lastTS string
	gap    *gap

	buf        []byte
	start, end int  // unconsumed bytes are buf[start:end]
	skipping   bool // inside a line longer than max_line_bytes

	// fixed, for Backfill, is the list of files to read, in order;
	// fixedAt indexes the current one.
	fixed   []Ref
	fixedAt int

	watcher *fsnotify.Watcher
	watched bool
	wake    chan struct{}
	timer   *time.Timer
	stopAt  func(*openFile) bool // stop at EOF of the live file (backfill, benchmarks)
	now     func() time.Time
}

func newFollower(cfg Config, c *chunker) *follower {
	return &follower{
		name:   newLogName(cfg.Path),
		input:  cfg.Path,
		cfg:    cfg,
		log:    cfg.Log.With("input", cfg.Path),
		stats:  cfg.Stats,
		chunks: c,
		buf:    make([]byte, min(readSize, cfg.MaxLineBytes+1)),
		wake:   make(chan struct{}, 1),
		now:    cfg.Now,
	}
}

// errStop ends the follower without error (ctx done or stopAt reached).
var errStop = errors.New("stop")

// closeAll closes the open file and the watcher.
func (f *follower) closeAll() {
	f.closeGap("")
	f.cur.close()
	f.cur = nil
	if f.watcher != nil {
		f.watcher.Close()
		f.watcher = nil
	}
}

// initialCursor is what a first start records before anything is
// delivered, so that a crash before the first acknowledgement does not turn
// the next start into another first start.
func (f *follower) initialCursor() Cursor {
	if f.cur == nil {
		return Cursor{Path: f.input, Order: f.floor}
	}
	return f.cursorAt(f.cur, f.cur.base+int64(f.start))
}

// startOrder is a floor for "rotated after now": lumberjack names carry
// milliseconds, so it is truncated to the millisecond (inclusive: a file
// rotated in this same millisecond is read rather than missed).
func (f *follower) startOrder() time.Time { return f.now().UTC().Truncate(time.Millisecond) }

// cursorAt describes the position off in s.
func (f *follower) cursorAt(s *openFile, off int64) Cursor {
	c := Cursor{
		Path:   s.ref.Path,
		Dev:    s.ref.Dev,
		Ino:    s.ref.Ino,
		FP:     s.fp,
		Offset: off,
		Size:   max(s.size, off),
		Order:  s.order,
		LastTS: f.lastTS,
	}
	if len(f.pending) > 0 {
		c.Pending = append([]Ref(nil), f.pending...)
	}
	c.Done = f.done.last(doneKept)
	return c
}

// resolve opens the file the cursor points to and queues what follows it.
func (f *follower) resolve(c *Cursor, startAt string) error {
	files, err := f.listFiles()
	if err != nil {
		return err
	}
	if c == nil {
		f.lastBackup = newestBackup(files) // backups before the first start are backfill's
		live, ok := liveFile(files)
		if !ok {
			f.log.Info("input file does not exist yet; waiting for it", "path", f.input)
			f.floor = f.startOrder()
			return nil
		}
		s, err := f.open(live, 0)
		if err != nil {
			return err
		}
		if startAt == "end" {
			off, err := lastLineEnd(s.f, s.size)
			if err != nil {
				s.close()
				return fmt.Errorf("cannot read %s: %w", s.ref.Path, err)
			}
			if _, err := s.f.Seek(off, io.SeekStart); err != nil {
				s.close()
				return fmt.Errorf("cannot seek %s: %w", s.ref.Path, err)
			}
			s.base = off
			if off > 0 {
				var head [fingerprintMax]byte
				n, _ := s.f.ReadAt(head[:], 0)
				s.fp = fingerprintOf(head[:n])
			}
		}
		f.setCur(s)
		f.log.Info("first start: following the live file", "path", s.ref.Path, "start_at", startAt, "offset", s.base)
		return nil
	}

	f.lastTS = c.LastTS
	for _, fp := range c.Done {
		f.done.add(fp)
	}
	f.countLostPending(c.Pending, files)
	minTS := c.Order.Truncate(time.Millisecond)
	if c.FP.ready() {
		// Every file is a candidate: a copytruncate copy is named when the
		// copy starts, possibly before the cursor's Order.
		f.fps.fill(files, true)
		if i := findByFingerprint(files, c.FP, time.Time{}, true); i >= 0 {
			ref := files[i]
			s, err := f.openRef(ref, c.Offset)
			if err != nil && !ref.Live {
				// A torn or corrupt backup (a .gz cut short by a crash, say)
				// cannot be read to the checkpointed offset: give up on it
				// alone, count what was left of it, go on with the next.
				f.log.Error("cannot resume in a rotated backup; skipping it", "path", ref.Path, "offset", c.Offset, "error", err)
				f.done.add(c.FP)
				f.lose(ref.Path, max(0, c.Size-c.Offset), "the checkpointed backup cannot be read")
				f.floor = ref.TS
				return f.openFirst(backupsAfter(append(files[:i:i], files[i+1:]...), ref, true))
			}
			if err != nil {
				return err
			}
			s.fp = c.FP
			f.setCur(s)
			f.pending = backupsAfter(files, ref, false)
			if !ref.Live {
				f.lastBackup = ref.TS
			}
			f.log.Info("resuming", "path", ref.Path, "offset", s.base, "backups_after", len(f.pending))
			return nil
		}
		lost := max(0, c.Size-c.Offset)
		f.lose(c.Path, lost, "the checkpointed file is gone (rotated and deleted while the agent was down; backups rotated after it may be gone unlisted too: the window is what is missing)")
	}
	// Continue with every file written after the cursor's file.
	f.floor = minTS
	return f.openFirst(fromFloor(files, minTS))
}

// countLostPending counts the backups that were queued at the last
// checkpoint and are gone now.
func (f *follower) countLostPending(pending, files []Ref) {
	// A checkpoint stores no rotation times: they are in the names.
	var named []Ref
	for _, p := range pending {
		if b, ok := f.name.parseBackup(filepath.Base(p.Path)); ok && b.seq == 0 {
			p.TS = b.ts
			named = append(named, p)
		}
	}
	for _, p := range vanished(named, files) {
		f.lose(p.Path, p.lostSize(), "a rotated backup was deleted before it was read")
	}
}

// openFirst opens the first file of files that can still be opened, queues
// the rest, and counts the ones that vanished.
func (f *follower) openFirst(files []Ref) error {
	for i, ref := range files {
		if !ref.Live && ref.fpRead && f.done.has(ref.fp) {
			continue // read to its end already (a clock put it here)
		}
		s, err := f.openRef(ref, 0)
		if errors.Is(err, os.ErrNotExist) {
			if !ref.Live {
				f.lose(ref.Path, ref.lostSize(), "a rotated backup was deleted before it was read")
			}
			continue
		}
		if err != nil && !ref.Live {
			// A corrupt or unreadable backup must not stop the input.
			f.log.Error("cannot read a rotated backup; skipping it", "path", ref.Path, "error", err)
			f.lose(ref.Path, ref.lostSize(), "a rotated backup could not be read")
			continue
		}
		if err != nil {
			return err
		}
		f.setCur(s)
		f.pending = append(f.pending[:0], files[i+1:]...)
		if n := len(f.pending); n > 0 && f.pending[n-1].Live {
			f.pending = f.pending[:n-1]
		}
		return nil
	}
	f.cur = nil
	f.pending = f.pending[:0]
	return nil
}

// openRef opens ref at off; a plain backup that lumberjack compressed (and
// removed) since it was listed is opened as its .gz twin.
func (f *follower) openRef(ref Ref, off int64) (*openFile, error) {
	s, err := f.open(ref, off)
	if errors.Is(err, os.ErrNotExist) && !ref.Live && !ref.GZ {
		twin := ref
		twin.Path, twin.GZ = ref.Path+".gz", true
		s, err = f.open(twin, off)
	}
	return s, err
}

func (f *follower) setCur(s *openFile) {
	f.cur = s
	f.stats.Open.Store(true)
	f.start, f.end = 0, 0
	f.skipping = false
}

// open opens ref and positions it at off (decompressed bytes).
func (f *follower) open(ref Ref, off int64) (*openFile, error) {
	fh, err := os.Open(ref.Path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("cannot open %s: %w", ref.Path, err)
	}
	info, err := fh.Stat()
	if err != nil {
		fh.Close()
		return nil, fmt.Errorf("cannot stat %s: %w", ref.Path, err)
	}
	ref.Dev, ref.Ino = ID(info)
	s := &openFile{placed: placed{ref: ref, order: ref.TS}, f: fh, r: fh, size: info.Size()}
	if ref.Live {
		// The exact time: a backup named with this same millisecond was
		// rotated before the file was opened, so it is not the file's own.
		s.order = f.now().UTC()
	}
	if ref.GZ {
		s.size = ref.Bytes // uncompressed, from the listing; 0 if unknown
		zr, err := gzip.NewReader(fh)
		if err != nil {
			fh.Close()
			return nil, fmt.Errorf("cannot read gzip file %s: %w", ref.Path, err)
		}
		s.r = zr
		if off > 0 {
			n, err := io.CopyN(io.Discard, zr, off)
			if err != nil {
				fh.Close()
				return nil, fmt.Errorf("cannot skip to offset %d of %s (only %d bytes): %w", off, ref.Path, n, err)
			}
		}
		s.base = off
	} else if off > 0 {
		if off > s.size {
			f.stats.Truncations.Add(1)
			f.log.Warn("file is shorter than the checkpoint (truncated?); reading it from the start", "path", ref.Path, "size", s.size, "offset", off)
			off = 0
		}
		if _, err := fh.Seek(off, io.SeekStart); err != nil {
			fh.Close()
			return nil, fmt.Errorf("cannot seek %s: %w", ref.Path, err)
		}
		s.base = off
	}
	if off > 0 && !s.fp.ready() && !ref.GZ {
		// Resumed or started mid-file: the head tells who the file is.
		var head [fingerprintMax]byte
		n, _ := fh.ReadAt(head[:], 0)
		s.fp = fingerprintOf(head[:n])
	}
	return s, nil
}

// lastLineEnd returns the offset just past the last newline before size.
func lastLineEnd(f *os.File, size int64) (int64, error) {
	buf := make([]byte, 64<<10)
	for end := size; end > 0; {
		start := max(0, end-int64(len(buf)))
		n, err := f.ReadAt(buf[:end-start], start)
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			return start + int64(i) + 1, nil
		}
		end = start
	}
	return 0, nil
}

// loop reads until ctx is done.
func (f *follower) loop(ctx context.Context) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if f.cur == nil {
			if err := f.openNext(); err != nil {
				return err
			}
			if f.cur == nil {
				f.stats.Open.Store(false)
				if err := f.wait(ctx); err != nil {
					return err
				}
				continue
			}
		}
		n, err := f.read()
		if n > 0 {
			if f.cur.base == 0 && !f.cur.fp.ready() {
				if moved, err := f.identify(); err != nil {
					return err
				} else if moved {
					continue
				}
			}
			if f.cur.ref.Live && f.cur.fp.ready() && !f.sameHead() {
				// copytruncate refilled the file past our offset between two
				// reads: what we just read is from the middle of new content.
				if err := f.truncated(); err != nil {
					return err
				}
				continue
			}
			if err := f.scan(ctx); err != nil {
				return err
			}
			if f.now().Sub(f.listedAt) >= f.cfg.PollInterval {
				if err := f.refresh(); err != nil {
					return err
				}
			}
			continue
		}
		if err != nil && !errors.Is(err, io.EOF) {
			if err := f.readFailed(ctx, err); err != nil {
				return err
			}
			continue
		}
		// At the end of the file.
		if !f.cur.ref.Live {
			if err := f.next(ctx); err != nil {
				return err
			}
			continue
		}
		switch state, err := f.checkLive(); {
		case err != nil:
			return err
		case state == liveRotated:
			// The writer moved on once it writes to the next file: until then
			// it may still append to the renamed one, so keep reading that.
			if err := f.drain(ctx); err != nil {
				return err
			}
			ready, err := f.successorReady()
			if err != nil {
				return err
			}
			if !ready {
				f.chunks.flushDue(true)
				if err := f.wait(ctx); err != nil {
					return err
				}
				continue
			}
			if err := f.drain(ctx); err != nil {
				return err
			}
			if err := f.next(ctx); err != nil {
				return err
			}
		case state == liveTruncated:
			if err := f.truncated(); err != nil {
				return err
			}
		default:
			if f.stopAt != nil && f.stopAt(f.cur) {
				return errStop
			}
			f.chunks.flushDue(true)
			if err := f.wait(ctx); err != nil {
				return err
			}
		}
	}
}

// read reads the next block of the current file into buf.
func (f *follower) read() (int, error) {
	if f.end == len(f.buf) {
		f.makeRoom()
	}
	buf := f.buf[f.end:]
	if f.cur.capped {
		rem := f.cur.limit - f.cur.base - int64(f.end)
		if rem <= 0 {
			return 0, io.EOF
		}
		if int64(len(buf)) > rem {
			buf = buf[:rem]
		}
	}
	n, err := f.cur.r.Read(buf)
	f.end += n
	f.stats.ReadBytes.Add(int64(n))
	return n, err
}

// makeRoom frees space in a full buffer: it moves the partial line to the
// front, grows the buffer up to max_line_bytes, or gives up on the line.
func (f *follower) makeRoom() {
	if f.start > 0 {
		copy(f.buf, f.buf[f.start:f.end])
		f.cur.base += int64(f.start)
		f.end -= f.start
		f.start = 0
		return
	}
	limit := f.cfg.MaxLineBytes + 1 // the line and its newline
	if len(f.buf) < limit {
		nb := make([]byte, min(2*len(f.buf), limit))
		copy(nb, f.buf[:f.end])
		f.buf = nb
		return
	}
	// The whole buffer is one line longer than the limit: drop what we
	// have and skip to the next newline.
	if !f.skipping {
		f.stats.OversizeLines.Add(1)
		f.log.Warn("skipping a line longer than max_line_bytes", "path", f.cur.ref.Path, "offset", f.cur.base, "max_line_bytes", f.cfg.MaxLineBytes)
	}
	f.skipping = true
	f.cur.base += int64(f.end)
	f.start, f.end = 0, 0
}

// scan hands every complete line in the buffer to the batcher.
func (f *follower) scan(ctx context.Context) error {
	if f.cur.base == 0 && f.start == 0 && !f.cur.fp.ready() {
		f.cur.fp = fingerprintOf(f.buf[:f.end])
	}
	for {
		i := bytes.IndexByte(f.buf[f.start:f.end], '\n')
		if i < 0 {
			break
		}
		line := f.buf[f.start : f.start+i]
		f.start += i + 1
		if f.skipping {
			f.skipping = false
			continue
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		if f.gap != nil && !f.gap.deferred {
			f.closeGap(stageTS(line))
		}
		if err := f.chunks.add(ctx, line, f.cur, f.cur.base+int64(f.start)); err != nil {
			return err
		}
	}
	if f.start == f.end {
		f.cur.base += int64(f.start)
		f.start, f.end = 0, 0
	}
	f.chunks.flushDue(false)
	return nil
}

// identify takes the fingerprint of a file read from its start once its
// first line is in the buffer. For the live file it also looks for copies
// made since the file was opened: if copytruncate emptied and refilled the
// file before its first read, those copies hold older lines, so they are
// read first and the live file after them. It reports whether it switched
// files.
func (f *follower) identify() (bool, error) {
	s := f.cur
	fp := fingerprintOf(f.buf[f.start:f.end])
	if !fp.ready() {
		return false, nil
	}
	s.fp = fp
	if !s.ref.Live {
		return false, nil
	}
	files, err := f.listFiles()
	if err != nil {
		return false, err
	}
	copies, first := copiesOf(files, s.placed, f.lastBackup, &f.done)
	if copies == 0 {
		return false, nil
	}
	f.log.Info("unread backups older than the live file (copytruncate copies, or a rotation while it was opened); reading them first", "path", f.input, "backups", copies)
	s.close()
	f.cur, f.prev, f.floor = nil, nil, first
	return true, f.openNext()
}

// drain reads the current file to its end.
func (f *follower) drain(ctx context.Context) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := f.read()
		if n > 0 {
			if err := f.scan(ctx); err != nil {
				return err
			}
			continue
		}
		if err == nil || errors.Is(err, io.EOF) {
			return nil
		}
		return fmt.Errorf("cannot read %s: %w", f.cur.ref.Path, err)
	}
}

type liveState int

const (
	liveSame liveState = iota
	liveRotated
	liveTruncated
)

// checkLive looks at the live path and the open file after an EOF.
func (f *follower) checkLive() (liveState, error) {
	s := f.cur
	info, err := s.f.Stat()
	if err != nil {
		return liveSame, fmt.Errorf("cannot stat %s: %w", s.ref.Path, err)
	}
	size := info.Size()
	read := s.base + int64(f.end)
	if size < read {
		return liveTruncated, nil
	}
	s.size = max(s.size, size)
	if size > read {
		return liveSame, nil // more to read: the next read gets it
	}
	pinfo, err := os.Stat(f.input)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return liveRotated, nil
	case err != nil:
		return liveSame, fmt.Errorf("cannot stat %s: %w", f.input, err)
	}
	if dev, ino := ID(pinfo); dev != s.ref.Dev || ino != s.ref.Ino {
		return liveRotated, nil
	}
	// copytruncate can truncate and refill the file between two looks:
	// compare the head with the fingerprint now and then.
	if s.fp.ready() && f.now().Sub(s.fpChecked) >= f.cfg.PollInterval {
		s.fpChecked = f.now()
		if !f.sameHead() {
			return liveTruncated, nil
		}
	}
	return liveSame, nil
}

// sameHead reports whether the open live file still starts with the line
// it was identified by. One pread per block read: cheap insurance against
// reading the middle of new content after a copytruncate.
func (f *follower) sameHead() bool {
	s := f.cur
	var head [fingerprintMax]byte
	n, _ := s.f.ReadAt(head[:s.fp.Len], 0)
	return n == s.fp.Len && fingerprintOf(head[:n]) == s.fp
}

// successorReady reports whether the file written after the current
// (renamed) one has data, which means the writer is done with the current
// one: a writer appends to one file at a time.
func (f *follower) successorReady() (bool, error) {
	info, err := os.Stat(f.input)
	if err == nil {
		if dev, ino := ID(info); dev != f.cur.ref.Dev || ino != f.cur.ref.Ino {
			return info.Size() > 0, nil
		}
	}
	files, err := f.listFiles()
	if err != nil {
		return false, err
	}
	for _, ref := range f.after(files, f.cur) {
		if !ref.Live {
			return true, nil // the next file was rotated already
		}
	}
	return false, nil
}

// truncated handles a live file that was truncated in place (copytruncate):
// the rest of the old content is read from its copy if one can be found by
// fingerprint, then the live file is read again from offset 0.
func (f *follower) truncated() error {
	f.chunks.flush(false)
	old := f.cur
	resume := old.base + int64(f.start)
	f.stats.Truncations.Add(1)
	f.cur = nil
	defer old.close()
	// Unless a copy is found, go on with the live file alone, from 0.
	f.prev, f.floor, f.pending = nil, liveOnly, f.pending[:0]
	files, err := f.listFiles()
	if err != nil {
		return err
	}
	// Any backup may be the copy: the time in its name is when the copy
	// started, which can be before this file was opened. The fingerprint
	// alone identifies it.
	if i := findByFingerprint(files, old.fp, time.Time{}, false); i >= 0 {
		ref := files[i]
		if s, err := f.openRef(ref, resume); err == nil {
			f.log.Info("live file was truncated (copytruncate); reading the rest from its copy", "path", f.input, "copy", ref.Path, "offset", resume)
			f.setCur(s)
			return nil
		}
	}
	if lost := old.size - resume; lost > 0 {
		f.lose(f.input, lost, "the live file was truncated before it was read and no copy was found")
	} else {
		// Read to its end: a copy found later (logrotate renaming it while
		// it was looked for) is not unread.
		f.done.add(old.fp)
		f.log.Info("live file was truncated; reading it from the start", "path", f.input)
	}
	return nil // loop opens the live file again at 0
}

// next moves from a finished file to the one written after it.
func (f *follower) next(ctx context.Context) error {
	f.chunks.flush(false) // a batch's cursor always names the file being read
	old := f.cur
	if f.end > f.start && !f.skipping {
		f.stats.TornLines.Add(1)
		f.log.Warn("rotated file ends with an incomplete line; skipping it", "path", old.ref.Path, "bytes", f.end-f.start)
	}
	f.stats.Rotations.Add(1)
	f.done.add(old.fp)
	if !old.ref.Live && old.ref.TS.After(f.lastBackup) {
		f.lastBackup = old.ref.TS
	}
	if f.gap != nil && f.gap.deferred {
		// The gap starts here: after the last line of the finished file.
		f.gap.deferred, f.gap.from = false, f.readTS()
	}
	f.cur, f.prev = nil, old
	err := f.openNext()
	old.close() // after listing: while it is open its inode cannot be reused
	return err
}

// openNext opens the next file to read when none is open: the oldest
// backup written after prev (or rotated after floor), else the live file.
func (f *follower) openNext() error {
	files, err := f.listFiles()
	if err != nil {
		return err
	}
	f.notePending(files)
	f.pending = f.pending[:0]
	if err := f.openFirst(f.after(files, f.prev)); err != nil || f.cur == nil {
		return err
	}
	f.prev = nil
	if f.cur.ref.Live {
		f.log.Info("reading the live file", "path", f.input)
	}
	return nil
}

// notePending counts the queued backups that vanished before they were
// read: lumberjack deleted them (max backups or age) while we lagged.
func (f *follower) notePending(files []Ref) {
	for _, p := range vanished(f.pending, files) {
		f.lose(p.Path, p.lostSize(), "a rotated backup was deleted before it was read")
		if f.cur != nil {
			// Noticed while reading an older file: the gap is where the
			// backup would have been read, after the open file's end.
			f.gap.deferred = true
		}
	}
}

// refresh lists the directory again while a file is being read, so that
// the queue of backups to read next (saved with each cursor) is current and
// backups deleted before they were read are counted with their sizes.
func (f *follower) refresh() error {
	f.listedAt = f.now()
	files, err := f.listFiles()
	if err != nil {
		return err
	}
	f.notePending(files)
	f.pending = f.pending[:0]
	for _, ref := range f.after(files, f.cur) {
		if !ref.Live {
			f.pending = append(f.pending, ref)
		}
	}
	return nil
}

// after returns the files that come after prev (or floor when prev is
// nil), oldest first, the live file last (see filesAfter).
func (f *follower) after(files []Ref, prev *openFile) []Ref {
	var p *placed
	if prev != nil {
		p = &prev.placed
	}
	out, own, known := filesAfter(files, p, f.floor)
	if known && own.After(f.lastBackup) {
		f.lastBackup = own
	}
	return out
}

// readFailed handles an I/O error: a corrupt gzip file is given up (what is
// left of it is counted as lost), anything else is retried.
func (f *follower) readFailed(ctx context.Context, err error) error {
	if s := f.cur; s.ref.GZ {
		f.log.Error("cannot read compressed backup; skipping the rest of it", "path", s.ref.Path, "error", err)
		// What is left cannot be decompressed, so its size is unknown: the
		// compressed bytes not yet consumed are the lower bound (audit JSON
		// never compresses to more than its own size).
		var rest int64
		if pos, err := s.f.Seek(0, io.SeekCurrent); err == nil {
			if info, err := s.f.Stat(); err == nil {
				rest = max(0, info.Size()-pos)
			}
		}
		f.lose(s.ref.Path, rest, "a compressed backup is corrupt; the rest of it cannot be read")
		return f.next(ctx)
	}
	f.log.Error("read failed; retrying", "path", f.cur.ref.Path, "error", err)
	return f.wait(ctx)
}

// watch starts an inotify watch on the input's directory, if it exists.
// The poll timer covers the time before, and whatever inotify misses.
func (f *follower) watch() {
	if f.watched {
		return
	}
	if f.watcher == nil {
		w, err := fsnotify.NewWatcher()
		if err != nil {
			f.log.Warn("inotify unavailable; polling only", "error", err)
			f.watched = true
			return
		}
		f.watcher = w
		go f.forward(w)
	}
	if err := f.watcher.Add(f.name.dir); err == nil {
		f.watched = true
	}
}

// forward turns inotify events into wake-ups; it ends when the watcher is
// closed.
func (f *follower) forward(w *fsnotify.Watcher) {
	for {
		select {
		case _, ok := <-w.Events:
			if !ok {
				return
			}
			select {
			case f.wake <- struct{}{}:
			default:
			}
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			f.log.Debug("inotify error; the poll timer covers it", "error", err)
		}
	}
}

// wait sleeps until inotify reports a change, the poll interval passes, the
// open batch is due, or ctx is done.
func (f *follower) wait(ctx context.Context) error {
	d := f.cfg.PollInterval
	if due, ok := f.chunks.due(); ok {
		d = min(d, max(0, time.Until(due)))
	}
	f.timer.Reset(d)
	defer f.timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-f.wake:
	case <-f.timer.C:
	}
	f.watch()
	return nil
}

func (f *follower) listFiles() ([]Ref, error) {
	files, err := f.name.list()
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cannot list %s: %w", f.name.dir, err)
	}
	f.fps.fill(files, false)
	return files, nil
}
