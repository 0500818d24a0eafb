package file_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/audittail/audittail/outputs"
	"github.com/audittail/audittail/outputs/file"
)

func countLines(t *testing.T, glob string) int {
	t.Helper()
	files, _ := filepath.Glob(glob)
	n := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		n += bytes.Count(data, []byte("\n"))
	}
	return n
}

func TestSyncMayRunWhileSendWrites(t *testing.T) {
	for _, maxSizeMB := range []int{0, 1} {
		t.Run(map[int]string{0: "plain", 1: "rotating"}[maxSizeMB], func(t *testing.T) {
			dir := t.TempDir()
			o, err := file.New(file.Options{Path: filepath.Join(dir, "out.jsonl"), MaxSizeMB: maxSizeMB}, nil)
			if err != nil {
				t.Fatal(err)
			}
			var s outputs.Syncer = o
			done := make(chan struct{})
			var wg sync.WaitGroup
			var syncErr error
			syncs := 0
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-done:
						return
					default:
					}
					if err := s.Sync(); err != nil {
						syncErr = err
						return
					}
					syncs++
				}
			}()
			const batches, perBatch = 40, 500
			for i := range batches { // 40 × 500 KB: about 19 rotations at 1 MB
				if err := o.Send(context.Background(), linesOf(i*perBatch, perBatch, 1000)); err != nil {
					t.Fatal(err)
				}
			}
			close(done)
			wg.Wait()
			if syncErr != nil {
				t.Fatalf("Sync during Send: %v", syncErr)
			}
			if err := s.Sync(); err != nil {
				t.Fatalf("Sync after the last Send: %v", err)
			}
			if err := o.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			if n := countLines(t, filepath.Join(dir, "out*")); n != batches*perBatch {
				t.Fatalf("%d lines in the files, want %d", n, batches*perBatch)
			}
			t.Logf("%d syncs ran during the sends", syncs)
			if err := s.Sync(); !errors.Is(err, outputs.ErrClosed) {
				t.Fatalf("Sync after Close = %v, want ErrClosed", err)
			}
		})
	}
}

func TestRotatingWithoutSyncKeepsNoDescriptorPerRotation(t *testing.T) {
	dir := t.TempDir()
	o, err := file.New(file.Options{Path: filepath.Join(dir, "out.jsonl"), MaxSizeMB: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close(context.Background())
	fds := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Skip("no /proc/self/fd")
		}
		return len(ents)
	}
	if err := o.Send(context.Background(), linesOf(0, 10, 1000)); err != nil {
		t.Fatal(err)
	}
	before := fds()
	for i := range 30 { // 30 rotations, never a Sync
		if err := o.Send(context.Background(), linesOf(i, 1, 1<<20-100)); err != nil {
			t.Fatal(err)
		}
	}
	if after := fds(); after > before+10 {
		t.Fatalf("%d descriptors open after 30 rotations without Sync, %d before", after, before)
	}
}

func TestSyncOfAStreamDoesNothing(t *testing.T) {
	var buf bytes.Buffer
	if err := file.NewWriter(&buf, "buffer").Sync(); err != nil {
		t.Fatalf("Sync of a stream = %v, want nil", err)
	}
}
