package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"gopkg.in/natefinch/lumberjack.v2"

	"github.com/audittail/audittail/outputs"
)

// deadLetter is the JSON-lines file that keeps the events an output
// rejected permanently, so that nothing vanishes: one object per event with
// the time, output, input, error and the event itself. It is rotated with
// lumberjack at 100 MB and compressed, and no rotated file is ever deleted:
// removing them is the operator's call. It is opened on first use.
type deadLetter struct {
	path  string
	mu    sync.Mutex
	w     *lumberjack.Logger
	buf   []byte
	dirty bool // written since the last sync
}

func newDeadLetter(path string) *deadLetter { return &deadLetter{path: path} }

type deadRecord struct {
	Time   time.Time       `json:"time"`
	Output string          `json:"output"`
	Input  string          `json:"input"`
	Error  string          `json:"error"`
	Event  json.RawMessage `json:"event,omitempty"`
	Raw    string          `json:"raw,omitempty"` // the line, when it is not valid JSON
}

func (d *deadLetter) write(output string, b *outputs.Batch, lines []int, cause error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.w == nil {
		if err := os.MkdirAll(filepath.Dir(d.path), 0o700); err != nil {
			return fmt.Errorf("cannot create dead-letter directory for %s: %w", d.path, err)
		}
		d.w = &lumberjack.Logger{Filename: d.path, MaxSize: 100, Compress: true}
	}
	d.buf = d.buf[:0]
	now := time.Now().UTC()
	for _, i := range lines {
		rec := deadRecord{Time: now, Output: output, Input: b.Input, Error: cause.Error()}
		line := b.Line(i)
		if json.Valid(line) {
			rec.Event = line
		} else {
			rec.Raw = string(line)
		}
		b, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		d.buf = append(append(d.buf, b...), '\n')
	}
	if _, err := d.w.Write(d.buf); err != nil {
		return fmt.Errorf("cannot write dead-letter file %s: %w", d.path, err)
	}
	d.dirty = true
	return nil
}

func (d *deadLetter) close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.w == nil {
		return nil
	}
	return d.w.Close()
}

// sync fsyncs the dead-letter file, so that events the checkpoint moved
// past survive a crash of the machine here too.
func (d *deadLetter) sync() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.w == nil || !d.dirty {
		return nil
	}
	d.dirty = false
	// lumberjack keeps its file to itself: reopen the path to fsync it.
	f, err := os.OpenFile(d.path, os.O_WRONLY, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cannot sync dead-letter file %s: %w", d.path, err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("cannot sync dead-letter file %s: %w", d.path, err)
	}
	return nil
}
