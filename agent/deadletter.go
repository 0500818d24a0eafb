package agent

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"gopkg.in/natefinch/lumberjack.v2"
)

// deadLetter is the JSON-lines file that keeps the events an output
// rejected permanently, so that nothing vanishes: one object per event with
// the time, output, input, error and the event itself. It is rotated with
// lumberjack at 100 MB and compressed, and no rotated file is ever deleted:
// removing them is the operator's call. It is opened on first use.
type deadLetter struct {
	path string
	mu   sync.Mutex
	w    *lumberjack.Logger
	buf  []byte
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

func (d *deadLetter) write(output string, pb *pendingBatch, lines []int, cause error) error {
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
		rec := deadRecord{Time: now, Output: output, Input: pb.input, Error: cause.Error()}
		line := pb.Line(i)
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
