package agent

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/audittail/audittail/outputs"
	"github.com/audittail/audittail/outputs/file"
)

// TestBrokenStateFixtures starts the agent on each broken on-disk state
// under testdata/broken/NAME: the files there go to state_dir (@INPUT@
// replaced by the input's path), the live file gets 20 events, and expect
// says the outcome: "refuse: TEXT" (New fails with an error containing
// TEXT) or "deliver: N" (N events delivered).
func TestBrokenStateFixtures(t *testing.T) {
	dirs, err := filepath.Glob("testdata/broken/*")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			expect, err := os.ReadFile(filepath.Join(dir, "expect"))
			if err != nil {
				t.Fatal(err)
			}
			verb, arg, _ := strings.Cut(strings.SplitN(string(expect), "\n", 2)[0], ": ")
			h := newHarness(t, nil)
			if err := os.MkdirAll(h.cfg.StateDir, 0o700); err != nil {
				t.Fatal(err)
			}
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				if e.Name() == "expect" {
					continue
				}
				data, err := os.ReadFile(filepath.Join(dir, e.Name()))
				if err != nil {
					t.Fatal(err)
				}
				data = []byte(strings.ReplaceAll(string(data), "@INPUT@", h.input))
				if err := os.WriteFile(filepath.Join(h.cfg.StateDir, e.Name()), data, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			appendLines(t, h.input, events(0, 20))
			log := h.log()
			build := func(c outputs.Config) (outputs.Output, error) { return file.New(file.Options{Path: h.out}, log) }
			switch verb {
			case "refuse":
				a, err := New(h.cfg, log, build, Options{})
				if err == nil {
					a.Run(canceled())
					t.Fatalf("the agent started; want it to refuse with %q", arg)
				}
				if !strings.Contains(err.Error(), arg) || !strings.Contains(err.Error(), h.cfg.StateDir) {
					t.Fatalf("error %q does not say %q and name the file", err, arg)
				}
			case "deliver":
				n, err := strconv.Atoi(arg)
				if err != nil {
					t.Fatal(err)
				}
				h.start(Options{})
				assertLines(t, h.waitDelivered(n), events(0, n))
				h.stop()
			default:
				t.Fatalf("expect: unknown outcome %q", verb)
			}
		})
	}
}

func canceled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}
