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

	// A file (plain or rotating) whose size is tracked, so that a failed
	// write can be cut back to the last complete line, and so that
	// lumberjack never rotates twice in one millisecond (its backup names
	// carry milliseconds: the second rename would overwrite the first).
	path       string
	size       int64
	maxSize    int64 // rotating at this size; 0: never
	lastRotate time.Time
	chunk      []byte
}

var _ outputs.Output = (*Output)(nil)

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
	o := &Output{name: cfg.Path, path: cfg.Path}
	if fi, err := os.Stat(cfg.Path); err == nil {
		o.size = fi.Size()
	}
	if cfg.MaxSizeMB > 0 {
		lj := &lumberjack.Logger{
			Filename:   cfg.Path,
			MaxSize:    cfg.MaxSizeMB,
			MaxBackups: cfg.MaxBackups,
			Compress:   cfg.Compress,
		}
		o.w, o.closer, o.maxSize = lj, lj, int64(cfg.MaxSizeMB)<<20
		return o, nil
	}
	f, err := os.OpenFile(cfg.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("cannot open output file %s: %w", cfg.Path, err)
	}
	o.w, o.closer = f, f
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
		if len(o.chunk) > 0 && (len(o.chunk)+int(n) > maxChunk || o.size+int64(len(o.chunk))+n > o.maxSize) {
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

// write appends p to the file, rotating first if lumberjack will.
func (o *Output) write(p []byte) error {
	if o.maxSize > 0 && o.size+int64(len(p)) > o.maxSize {
		// lumberjack rotates on this write: never twice in a millisecond.
		if d := 2*time.Millisecond - time.Since(o.lastRotate); d > 0 {
			time.Sleep(d)
		}
		o.lastRotate = time.Now()
		o.size = 0
	}
	if _, err := o.w.Write(p); err != nil {
		// Cut a partly written line: it would run into the retry's first.
		if terr := os.Truncate(o.path, o.size); terr != nil {
			err = errors.Join(err, fmt.Errorf("cannot cut the torn write: %w", terr))
		}
		return fmt.Errorf("cannot write to %s: %w", o.name, err)
	}
	o.size += int64(len(p))
	return nil
}

// Close closes the file.
func (o *Output) Close(context.Context) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return nil
	}
	o.closed = true
	if o.closer != nil {
		if err := o.closer.Close(); err != nil {
			return fmt.Errorf("cannot close %s: %w", o.name, err)
		}
	}
	return nil
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
