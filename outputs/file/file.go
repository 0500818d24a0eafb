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

	"gopkg.in/natefinch/lumberjack.v2"

	"github.com/audittail/audittail/outputs"
)

// maxChunk bounds a single write, so that a rotating file never receives a
// write larger than its maximum size and a line never straddles two files.
const maxChunk = 1 << 20

// Output appends batches to a file or a stream.
type Output struct {
	mu       sync.Mutex
	w        io.Writer
	closer   io.Closer
	name     string
	maxWrite int // 0: write the batch in one call
	closed   bool
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
	o := &Output{name: cfg.Path}
	if cfg.MaxSizeMB > 0 {
		lj := &lumberjack.Logger{
			Filename:   cfg.Path,
			MaxSize:    cfg.MaxSizeMB,
			MaxBackups: cfg.MaxBackups,
			Compress:   cfg.Compress,
		}
		o.w, o.closer, o.maxWrite = lj, lj, min(maxChunk, cfg.MaxSizeMB<<20)
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

// Send writes every line of b. A write error leaves the batch
// unacknowledged; the agent retries it.
func (o *Output) Send(ctx context.Context, b *outputs.Batch) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return outputs.ErrClosed
	}
	p := b.Bytes()
	if o.maxWrite == 0 {
		if _, err := o.w.Write(p); err != nil {
			return fmt.Errorf("cannot write to %s: %w", o.name, err)
		}
		return nil
	}
	for len(p) > 0 {
		n := chunkLen(p, o.maxWrite)
		if _, err := o.w.Write(p[:n]); err != nil {
			return fmt.Errorf("cannot write to %s: %w", o.name, err)
		}
		p = p[n:]
	}
	return nil
}

// chunkLen returns the length of the longest prefix of p that ends with a
// newline and is at most max bytes, or the first line if that alone is
// longer.
func chunkLen(p []byte, max int) int {
	if len(p) <= max {
		return len(p)
	}
	if i := bytes.LastIndexByte(p[:max], '\n'); i >= 0 {
		return i + 1
	}
	if i := bytes.IndexByte(p, '\n'); i >= 0 {
		return i + 1
	}
	return len(p)
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
