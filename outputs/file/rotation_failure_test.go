package file_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/audittail/audittail/outputs"
	"github.com/audittail/audittail/outputs/file"
)

// linesOf returns a batch of n lines of size bytes each (newline included),
// numbered from first.
func linesOf(first, n, size int) *outputs.Batch {
	b := &outputs.Batch{}
	for i := range n {
		head := fmt.Sprintf(`{"n":%d,"pad":"`, first+i)
		pad := size - 1 - len(head) - len(`"}`)
		b.Append([]byte(head + strings.Repeat("p", pad) + `"}`))
	}
	return b
}

// TestARefusedRotationNeverCutsWhatEarlierWritesAdded reproduces issue 9:
// lumberjack closed the file, the rename to the backup name failed, and the
// output cut the live file to the size it believed it had after a rotation
// (0), deleting 930,000 acknowledged bytes.
//
// The rename is refused for real: the live file's name is as long as a file
// name may be (NAME_MAX is 255 bytes on Linux file systems) less a few
// bytes, so the backup name lumberjack derives from it (with
// -2006-01-02T15-04-05.000 inserted, 24 bytes) is too long and rename(2)
// fails with ENAMETOOLONG, even for root.
func TestARefusedRotationNeverCutsWhatEarlierWritesAdded(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, strings.Repeat("a", 240)+".jsonl")
	o, err := file.New(file.Options{Path: path, MaxSizeMB: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close(context.Background())
	acked := linesOf(0, 930, 1000) // 930,000 bytes, acknowledged
	if err := o.Send(context.Background(), acked); err != nil {
		t.Fatal(err)
	}
	for attempt := range 3 { // the agent retries; every rotation is refused
		err := o.Send(context.Background(), linesOf(930, 1, 200_000)) // does not fit: rotates
		if err == nil {
			t.Fatalf("attempt %d: Send returned nil although the file could not rotate", attempt)
		}
		if !errors.Is(err, syscall.ENAMETOOLONG) && !strings.Contains(err.Error(), "rename") {
			t.Fatalf("attempt %d: Send = %v, want the refused rename", attempt, err)
		}
		got, _ := os.ReadFile(path)
		if !bytes.Equal(got, acked.Bytes()) {
			t.Fatalf("attempt %d: after a refused rotation the file holds %d bytes, want the %d acknowledged", attempt, len(got), len(acked.Bytes()))
		}
	}
	// A batch that fits without rotating is still appended.
	small := linesOf(930, 10, 1000)
	if err := o.Send(context.Background(), small); err != nil {
		t.Fatalf("Send of a batch that fits: %v", err)
	}
	got, _ := os.ReadFile(path)
	if want := append(append([]byte(nil), acked.Bytes()...), small.Bytes()...); !bytes.Equal(got, want) {
		t.Fatalf("the file holds %d bytes, want %d", len(got), len(want))
	}
}

// TestATornWriteIsCutBackToTheSizeMeasuredJustBeforeIt makes a real torn
// write: RLIMIT_FSIZE lets write(2) put part of the batch in the file and
// then fail with EFBIG (Go ignores SIGXFSZ). The partial line must go, the
// lines acknowledged before must stay, and the retry must leave the file
// exactly as if the first attempt had succeeded.
func TestATornWriteIsCutBackToTheSizeMeasuredJustBeforeIt(t *testing.T) {
	for _, rotating := range []bool{false, true} {
		t.Run(fmt.Sprintf("rotating=%v", rotating), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "out.jsonl")
			opts := file.Options{Path: path}
			if rotating {
				opts.MaxSizeMB = 1
			}
			o, err := file.New(opts, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer o.Close(context.Background())
			first := linesOf(0, 100, 1000)
			if err := o.Send(context.Background(), first); err != nil {
				t.Fatal(err)
			}
			second := linesOf(100, 100, 1000)
			limitFileSize(t, int64(len(first.Bytes())+50_500))
			err = o.Send(context.Background(), second)
			if !errors.Is(err, syscall.EFBIG) {
				t.Fatalf("Send over RLIMIT_FSIZE = %v, want EFBIG", err)
			}
			got, _ := os.ReadFile(path)
			if !bytes.Equal(got, first.Bytes()) {
				t.Fatalf("after the torn write the file holds %d bytes, want the %d written before it", len(got), len(first.Bytes()))
			}
			unlimitFileSize(t)
			if err := o.Send(context.Background(), second); err != nil {
				t.Fatalf("retry: %v", err)
			}
			got, _ = os.ReadFile(path)
			if want := append(append([]byte(nil), first.Bytes()...), second.Bytes()...); !bytes.Equal(got, want) {
				t.Fatalf("after the retry the file holds %d bytes, want %d", len(got), len(want))
			}
		})
	}
}

var savedFsize *syscall.Rlimit

func limitFileSize(t *testing.T, n int64) {
	t.Helper()
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	savedFsize = &old
	t.Cleanup(func() { unlimitFileSize(t) })
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: uint64(n), Max: old.Max}); err != nil {
		t.Fatal(err)
	}
}

func unlimitFileSize(t *testing.T) {
	t.Helper()
	if savedFsize == nil {
		return
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, savedFsize); err != nil {
		t.Fatal(err)
	}
	savedFsize = nil
}
