package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/audittail/audittail/outputs"
	"github.com/audittail/audittail/outputs/file"
)

func TestThreeOutputsReadTheInputOnceAndADownOneCatchesUpFromItsOwnPosition(t *testing.T) {
	const total = 6000
	h := newHarness(t, func(c *Config) {
		c.Batch.MaxEvents = 50
		c.MaxInflight = 2
		c.Outputs = []outputs.Config{{Name: "a", Type: "file"}, {Name: "b", Type: "file"}, {Name: "down", Type: "file"}}
	})
	paths := map[string]string{}
	for _, n := range []string{"a", "b", "down"} {
		paths[n] = filepath.Join(h.dir, "out", n+".jsonl")
	}
	down := &switchOutput{}
	down.down.Store(true)
	log := h.log()
	a, err := New(h.cfg, log, func(c outputs.Config) (outputs.Output, error) {
		fo, err := file.New(file.Options{Path: paths[c.Name]}, log)
		if c.Name == "down" {
			down.Output = fo
			return down, err
		}
		return fo, err
	}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	h.run(a)

	// The writer rotates once on the way, as lumberjack does.
	appendLines(t, h.input, events(0, total/2))
	waitLines(t, paths["a"], total/2, h.logBuf)
	if err := os.Rename(h.input, backupName(h.input, time.Now())); err != nil {
		t.Fatal(err)
	}
	appendLines(t, h.input, events(total/2, total))

	// The healthy outputs get everything while the third is down.
	for _, n := range []string{"a", "b"} {
		assertLines(t, waitLines(t, paths[n], total, h.logBuf), events(0, total))
	}
	in := a.inputs[0]
	var downStream *stream
	for _, s := range a.streams {
		if s.out.name == "down" {
			downStream = s
		}
	}
	if downStream.detached.Load() == 0 {
		t.Fatal("the down output was never detached from the shared reader")
	}
	// Memory stays bounded: no reader's pool ever had more chunks out than
	// its size, and what is out now is at most the shared reader's and one
	// reader's per output.
	now, peak, _ := in.chunksOut()
	if peak > a.hubPool() || now > (1+len(h.cfg.Outputs))*a.hubPool() {
		t.Fatalf("chunks out: %d now, %d at most in one reader; pool size %d", now, peak, a.hubPool())
	}
	if got := readLines(t, paths["down"]); len(got) != 0 {
		t.Fatalf("the down output has %d lines", len(got))
	}

	// It returns, and catches up from its own position: all, in order,
	// none twice; then it is back on the shared reader.
	down.down.Store(false)
	assertLines(t, waitLines(t, paths["down"], total, h.logBuf), events(0, total))
	waitFor(t, func() bool { return strings.Contains(h.logBuf.String(), "back on the shared input") }, "the caught-up output rejoining the shared reader")
	appendLines(t, h.input, events(total, total+100))
	for _, n := range []string{"a", "b", "down"} {
		assertLines(t, waitLines(t, paths[n], total+100, h.logBuf), events(0, total+100))
	}
	h.stop()
}

func TestOneReadServesEveryOutput(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.Outputs = []outputs.Config{{Name: "a", Type: "file"}, {Name: "b", Type: "file"}, {Name: "test", Type: "file"}}
	})
	log := h.log()
	a, err := New(h.cfg, log, func(c outputs.Config) (outputs.Output, error) {
		return file.New(file.Options{Path: filepath.Join(h.dir, "out", c.Name+".jsonl")}, log)
	}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	h.run(a)
	appendLines(t, h.input, events(0, 1000))
	for _, n := range []string{"a", "b", "test"} {
		waitLines(t, filepath.Join(h.dir, "out", n+".jsonl"), 1000, h.logBuf)
	}
	h.stop()
	fi, err := os.Stat(h.input)
	if err != nil {
		t.Fatal(err)
	}
	if got := a.inputs[0].stats.ReadBytes.Load(); got != fi.Size() {
		t.Fatalf("read %d bytes for three outputs, want the file's %d once", got, fi.Size())
	}
}
