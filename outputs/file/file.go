// Package file implements the `file` and `stdout` outputs: audit events as
// JSON lines, exactly as they were read, one event per line. The file output
// can rotate itself with lumberjack, the same library kube-apiserver uses.
package file

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"gopkg.in/natefinch/lumberjack.v2"

	"github.com/audittail/audittail/outputs"
)

// maxChunk bounds a single write to a rotating file.
const maxChunk = 1 << 20

// Output appends batches to a file or a stream.
type Output struct {
	mu     sync.Mutex
	w      io.Writer
	closer io.Closer
	name   string
	closed bool
	log    *slog.Logger

	// A file (plain or rotating). Before each write the output measures
	// the file the write goes to, so that a failed write is cut back to
	// exactly what the file held before it and never further (issue 9: a
	// size believed instead of measured cut 930,000 acknowledged bytes).
	// The output rotates lumberjack itself, before a write that would
	// reach the maximum size, never twice in one millisecond (backup names
	// carry milliseconds: the second rename would overwrite the first).
	path       string
	lj         *lumberjack.Logger // rotating; nil for a plain file
	size       int64              // the current file's size: measured, plus what was written since
	maxSize    int64              // rotating at this size; 0: never
	lastRotate time.Time
	chunk      []byte

	// For Sync: cur is a handle on the current file (the file itself when
	// plain; our own descriptor on lumberjack's when rotating), used to
	// measure, cut and fsync it. retired holds the files rotated away since
	// the last Sync, whose data may still be in the page cache; dirDirty
	// says a file was created or renamed in the directory since then.
	cur      *os.File
	curInfo  os.FileInfo
	retired  []*os.File
	dirDirty bool
	syncing  *os.File // the file a Sync is fsyncing outside mu: not closed under it
	syncErr  error    // an fsync that failed outside Sync, reported by the next
	syncMu   sync.Mutex
}

// maxRetired bounds the rotated-away files kept open for the next Sync: an
// agent that never calls Sync must not leak a descriptor per rotation. The
// oldest is then fsynced and closed during Send instead.
const maxRetired = 8

var (
	_ outputs.Output = (*Output)(nil)
	_ outputs.Syncer = (*Output)(nil)
)

// Options are the `file` output's keys.
type Options struct {
	// Path is the file to append JSON lines to (required).
	Path string `yaml:"path"`
	// MaxSizeMB rotates the file (lumberjack) at this many megabytes; 0
	// never rotates.
	MaxSizeMB int `yaml:"max_size_mb"`
	// MaxBackups is how many rotated files to keep (0: all).
	MaxBackups int `yaml:"max_backups"`
	// Compress gzips rotated files.
	Compress bool `yaml:"compress"`
}

// FromConfig decodes the file output's keys and opens it.
func FromConfig(c outputs.Config, log *slog.Logger) (*Output, error) {
	var o Options
	if err := c.DecodeOptions(&o); err != nil {
		return nil, err
	}
	return New(o, log)
}

// New opens the `file` output. A file left with a torn last line by a crash
// is cut back to its last complete line first (that line was never
// acknowledged, so it will be sent again).
func New(cfg Options, log *slog.Logger) (*Output, error) {
	if cfg.Path == "" {
		return nil, fmt.Errorf("path: required")
	}
	if cfg.MaxSizeMB < 0 || cfg.MaxBackups < 0 {
		return nil, fmt.Errorf("max_size_mb and max_backups must not be negative")
	}
	if err := os.MkdirAll(filepath.Dir(cfg.Path), 0o755); err != nil {
		return nil, fmt.Errorf("cannot create directory for %s: %w", cfg.Path, err)
	}
	cut, err := repairTornTail(cfg.Path)
	if err != nil {
		return nil, err
	}
	if cut > 0 && log != nil {
		log.Warn("removed a torn last line left by a crash; it will be sent again", "path", cfg.Path, "bytes", cut)
	}
	o := &Output{name: cfg.Path, path: cfg.Path, log: log, dirDirty: true}
	if cfg.MaxSizeMB > 0 {
		lj := &lumberjack.Logger{
			Filename:   cfg.Path,
			MaxSize:    cfg.MaxSizeMB,
			MaxBackups: cfg.MaxBackups,
			Compress:   cfg.Compress,
		}
		o.w, o.closer, o.lj, o.maxSize = lj, lj, lj, int64(cfg.MaxSizeMB)<<20
		if o.size, err = o.measure(); err != nil {
			return nil, err
		}
		return o, nil
	}
	f, err := os.OpenFile(cfg.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("cannot open output file %s: %w", cfg.Path, err)
	}
	o.w, o.closer, o.cur = f, f, f
	if o.size, err = o.measure(); err != nil {
		f.Close()
		return nil, err
	}
	return o, nil
}

// NewWriter returns an output that writes JSON lines to w (the `stdout`
// output uses os.Stdout). Close does not close w.
func NewWriter(w io.Writer, name string) *Output {
	return &Output{w: w, name: name}
}

// Send writes every line of b. A write error cuts the file back to the
// last complete line and leaves the batch unacknowledged (the agent sends
// it again). With rotation, a line longer than max_size_mb cannot be
// written at all: it is rejected (dead-lettered) and the rest written.
func (o *Output) Send(ctx context.Context, b *outputs.Batch) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return outputs.ErrClosed
	}
	if o.path == "" { // a stream
		if _, err := o.w.Write(b.Bytes()); err != nil {
			return fmt.Errorf("cannot write to %s: %w", o.name, err)
		}
		return nil
	}
	if o.maxSize == 0 {
		return o.write(b.Bytes())
	}
	// Rotating: one write per run of lines that fits both the chunk size
	// and the current file, so that a line never straddles two files.
	var rejected []int
	o.chunk = o.chunk[:0]
	for i := range b.Len() {
		n := int64(len(b.Line(i)) + 1)
		if n > o.maxSize {
			rejected = append(rejected, i)
			continue
		}
		if len(o.chunk) > 0 && (len(o.chunk)+int(n) > maxChunk || o.rotates(o.size+int64(len(o.chunk)), n)) {
			if err := o.write(o.chunk); err != nil {
				return err
			}
			o.chunk = o.chunk[:0]
		}
		o.chunk = append(append(o.chunk, b.Line(i)...), '\n')
	}
	if len(o.chunk) > 0 {
		if err := o.write(o.chunk); err != nil {
			return err
		}
	}
	if rejected != nil {
		return &outputs.RejectedError{Lines: rejected, Err: fmt.Errorf("line longer than max_size_mb (%d bytes)", o.maxSize)}
	}
	return nil
}

// rotates reports whether a write of n bytes to a file of size bytes
// rotates it first. lumberjack itself rotates when the write would pass
// the maximum (size+n > max), or reach it when it opens the file
// (size+n >= max); rotating at the stricter of the two, and only here,
// means lumberjack never rotates on its own.
func (o *Output) rotates(size, n int64) bool {
	return o.maxSize > 0 && size > 0 && size+n >= o.maxSize
}

// write appends p to the file, rotating it first when it is full. A
// failed write is cut back to the size the file was measured to have just
// before it: what earlier writes added is never cut.
func (o *Output) write(p []byte) error {
	before, err := o.measure()
	if err != nil {
		return err
	}
	if o.rotates(before, int64(len(p))) {
		if err := o.rotate(); err != nil {
			o.size = before
			return err
		}
		if before, err = o.measure(); err != nil {
			return err
		}
	}
	target := o.cur // the file this write goes to (nil: not created yet)
	if _, err := o.w.Write(p); err != nil {
		err = fmt.Errorf("cannot write to %s: %w", o.name, err)
		if cerr := o.cutTornWrite(target, before); cerr != nil {
			err = errors.Join(err, cerr)
		}
		return err
	}
	o.size = before + int64(len(p))
	return nil
}

// rotate has lumberjack rename the current file to a backup and create a
// new one. A refused rename leaves the current file as it was (lumberjack
// only closed it); the next write tries again.
func (o *Output) rotate() error {
	if d := 2*time.Millisecond - time.Since(o.lastRotate); d > 0 {
		time.Sleep(d)
	}
	o.lastRotate = time.Now()
	if err := o.lj.Rotate(); err != nil {
		return fmt.Errorf("cannot rotate %s: %w", o.path, err)
	}
	return o.track()
}

// cutTornWrite removes what a failed write left: on target, the bytes past
// before (its size measured just before the write), and a file that the
// write itself created (lumberjack rotating on its own), whole. Nothing
// else is touched.
func (o *Output) cutTornWrite(target *os.File, before int64) error {
	var errs []error
	cut := func(f *os.File, size int64) {
		fi, err := f.Stat()
		if err != nil {
			errs = append(errs, fmt.Errorf("cannot stat %s to cut the torn write: %w", o.path, err))
			return
		}
		if fi.Size() <= size {
			return
		}
		if err := f.Truncate(size); err != nil {
			errs = append(errs, fmt.Errorf("cannot cut the torn write from %s: %w", o.path, err))
		} else if o.log != nil {
			o.log.Warn("cut a torn write; the batch will be sent again", "path", o.path, "bytes", fi.Size()-size)
		}
	}
	if target != nil {
		cut(target, before)
	}
	if o.lj != nil {
		if err := o.track(); err != nil {
			errs = append(errs, err)
		} else if o.cur != nil && o.cur != target {
			cut(o.cur, 0)
		}
		// lumberjack's descriptor has no O_APPEND when it created the file
		// and its size count includes the torn bytes: closing it makes the
		// next write reopen the file for appending and measure it.
		if err := o.lj.Close(); err != nil {
			errs = append(errs, fmt.Errorf("cannot close %s: %w", o.path, err))
		}
	}
	o.size = before
	return errors.Join(errs...)
}

// measure returns the size of the file the next write goes to (0 if it
// does not exist yet), making o.cur a handle on it.
func (o *Output) measure() (int64, error) {
	if o.lj != nil {
		if err := o.track(); err != nil {
			return 0, err
		}
	}
	if o.cur == nil {
		return 0, nil
	}
	fi, err := o.cur.Stat()
	if err != nil {
		return 0, fmt.Errorf("cannot stat output file %s: %w", o.path, err)
	}
	return fi.Size(), nil
}

// track makes o.cur a handle on the file now at o.path (rotating output).
// A file that was rotated away is kept for the next Sync.
func (o *Output) track() error {
	fi, err := os.Stat(o.path)
	if errors.Is(err, os.ErrNotExist) {
		if o.cur != nil { // renamed, and the new file not created yet
			o.retire()
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("cannot stat output file %s: %w", o.path, err)
	}
	if o.cur != nil && os.SameFile(o.curInfo, fi) {
		return nil
	}
	f, err := os.OpenFile(o.path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("cannot open output file %s: %w", o.path, err)
	}
	if fi, err = f.Stat(); err != nil {
		f.Close()
		return fmt.Errorf("cannot stat output file %s: %w", o.path, err)
	}
	if o.cur != nil {
		o.retire()
	}
	o.cur, o.curInfo, o.dirDirty = f, fi, true
	return nil
}

// retire moves o.cur to the files the next Sync fsyncs, fsyncing and
// closing the oldest now if too many wait.
func (o *Output) retire() {
	o.retired = append(o.retired, o.cur)
	o.cur, o.curInfo = nil, nil
	for len(o.retired) > maxRetired && o.retired[0] != o.syncing {
		f := o.retired[0]
		o.retired = o.retired[1:]
		if err := f.Sync(); err != nil && o.syncErr == nil {
			o.syncErr = fmt.Errorf("cannot sync a rotated file of %s: %w", o.path, err)
		}
		f.Close()
	}
}

// Sync makes every line acknowledged before it durable: it fsyncs the
// current file, the files rotated away since the last Sync, and the
// directory when a rotation created a file in it. It may run while a Send
// writes (it holds the output's lock only to see which files to fsync). A
// stream has nothing to sync.
func (o *Output) Sync() error {
	o.syncMu.Lock()
	defer o.syncMu.Unlock()
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return outputs.ErrClosed
	}
	if o.path == "" {
		o.mu.Unlock()
		return nil
	}
	var errs []error
	if o.lj != nil {
		// lumberjack may have created the file (first write) or, at the
		// maximum size exactly, rotated it on its own.
		if err := o.track(); err != nil {
			errs = append(errs, err)
		}
	}
	cur, retired, dir := o.cur, o.retired, o.dirDirty
	o.retired, o.dirDirty, o.syncing = nil, false, cur
	if o.syncErr != nil {
		errs = append(errs, o.syncErr)
		o.syncErr = nil
	}
	o.mu.Unlock()

	var failed []*os.File
	for _, f := range retired {
		if err := f.Sync(); err != nil {
			errs = append(errs, fmt.Errorf("cannot sync a rotated file of %s: %w", o.path, err))
			failed = append(failed, f)
			continue
		}
		f.Close()
	}
	if cur != nil {
		if err := cur.Sync(); err != nil {
			errs = append(errs, fmt.Errorf("cannot sync %s: %w", o.path, err))
		}
	}
	if dir {
		if err := syncDir(filepath.Dir(o.path)); err != nil {
			errs = append(errs, err)
		}
	}

	o.mu.Lock()
	o.syncing = nil
	if len(errs) > 0 { // try again next time
		o.retired = append(failed, o.retired...)
		o.dirDirty = o.dirDirty || dir
	}
	o.mu.Unlock()
	return errors.Join(errs...)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("cannot open directory %s to sync it: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("cannot sync directory %s: %w", dir, err)
	}
	return nil
}

// Close closes the file. A Sync in progress is waited for; Sync after
// Close returns ErrClosed.
func (o *Output) Close(context.Context) error {
	o.syncMu.Lock()
	defer o.syncMu.Unlock()
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return nil
	}
	o.closed = true
	var errs []error
	if o.closer != nil {
		if err := o.closer.Close(); err != nil {
			errs = append(errs, fmt.Errorf("cannot close %s: %w", o.name, err))
		}
	}
	if o.lj != nil { // our own handles (a plain file's is its closer)
		for _, f := range append(o.retired, o.cur) {
			if f != nil {
				f.Close()
			}
		}
	}
	o.cur, o.retired = nil, nil
	return errors.Join(errs...)
}

// repairTornTail truncates path after its last newline if it does not end
// with one, and returns how many bytes it cut.
func repairTornTail(path string) (int64, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("cannot open output file %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("cannot stat output file %s: %w", path, err)
	}
	size := fi.Size()
	buf := make([]byte, 64<<10)
	for end := size; end > 0; {
		start := max(0, end-int64(len(buf)))
		n, err := f.ReadAt(buf[:end-start], start)
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, fmt.Errorf("cannot read output file %s: %w", path, err)
		}
		chunk := buf[:n]
		if end == size && n > 0 && chunk[n-1] == '\n' {
			return 0, nil
		}
		if i := bytes.LastIndexByte(chunk, '\n'); i >= 0 {
			keep := start + int64(i) + 1
			return size - keep, truncate(f, path, keep)
		}
		end = start
	}
	return size, truncate(f, path, 0)
}

func truncate(f *os.File, path string, size int64) error {
	if err := f.Truncate(size); err != nil {
		return fmt.Errorf("cannot cut torn line from output file %s: %w", path, err)
	}
	return nil
}
