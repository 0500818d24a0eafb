package file

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func testEvent(i int) string {
	return fmt.Sprintf(`{"kind":"Event","auditID":"id-%06d","stage":"ResponseComplete"}`, i)
}

func testEvents(from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, testEvent(i))
	}
	return out
}

func writeLines(t *testing.T, path string, lines []string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, l := range lines {
		if _, err := f.WriteString(l + "\n"); err != nil {
			t.Fatal(err)
		}
	}
}

func lumberjackName(live string, ts time.Time) string {
	ext := filepath.Ext(live)
	return strings.TrimSuffix(live, ext) + "-" + ts.UTC().Format(backupTimeFormat) + ext
}

// compress replaces path by path.gz, as lumberjack does.
func compress(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(data)
	zw.Close()
	if err := os.WriteFile(path+".gz", buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}

// readUntilStopped returns every line r hands out until it ends.
func readUntilStopped(t *testing.T, r *Reader) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var got []string
	for {
		c, err := r.Next(ctx)
		if errors.Is(err, io.EOF) {
			return got
		}
		if err != nil {
			t.Fatalf("after %d lines: %v", len(got), err)
		}
		for i := range c.Len() {
			got = append(got, string(c.Line(i)))
		}
		c.Release()
	}
}

func assertSame(t *testing.T, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d lines, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("line %d: got %s, want %s", i, got[i], want[i])
		}
	}
}

func TestALaterBackupIsNotTakenForACopyOfTheOpenFileAfterItWasRotated(t *testing.T) {
	for _, gz := range []bool{false, true} {
		name := "its backup is plain"
		if gz {
			name = "its backup was compressed"
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			live := filepath.Join(dir, "audit.log")
			writeLines(t, live, testEvents(0, 10)) // L1
			cfg := Config{Path: live, StartAt: "beginning", PollInterval: 10 * time.Millisecond, MaxWait: time.Millisecond}
			cfg.defaults()
			r := newReader(cfg)
			f := r.f
			f.stopAt = func(*openFile) bool { return true }
			f.timer = time.NewTimer(time.Hour)
			f.timer.Stop()
			if err := f.resolve(nil, cfg.StartAt); err != nil {
				t.Fatal(err)
			}
			// L1 is open and not read yet: it is rotated to B1, the next
			// live file to B2, and a third one is written.
			t1 := time.Now().Add(time.Second)
			b1 := lumberjackName(live, t1)
			if err := os.Rename(live, b1); err != nil {
				t.Fatal(err)
			}
			if gz {
				compress(t, b1)
			}
			writeLines(t, live, testEvents(10, 20)) // L2
			if err := os.Rename(live, lumberjackName(live, t1.Add(time.Second))); err != nil {
				t.Fatal(err)
			}
			writeLines(t, live, testEvents(20, 30)) // L3
			rd, err := r.run(f.loop)
			if err != nil {
				t.Fatal(err)
			}
			defer rd.Close()
			got := readUntilStopped(t, rd)
			assertSame(t, got, testEvents(0, 30))
			if n := cfg.Stats.LostFiles.Load(); n != 0 {
				t.Fatalf("%d files counted lost, want 0", n)
			}
		})
	}
}
