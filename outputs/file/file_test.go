package file_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/audittail/audittail/outputs"
	"github.com/audittail/audittail/outputs/file"
	"github.com/audittail/audittail/outputs/outputstest"
)

func TestConformance(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "events.jsonl")
	outputstest.Run(t, outputstest.Harness{
		New: func(t *testing.T) outputs.Output {
			o, err := file.New(file.Options{Path: path}, nil)
			if err != nil {
				t.Fatal(err)
			}
			return o
		},
		Received: func() []string {
			data, _ := os.ReadFile(path)
			var ids []string
			for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
				var ev struct{ AuditID string }
				if json.Unmarshal(line, &ev) == nil {
					ids = append(ids, ev.AuditID)
				}
			}
			return ids
		},
		Reset: func() { os.Remove(path) },
	})
}

func TestWritesEachLineExactlyAsRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.jsonl")
	o, err := file.New(file.Options{Path: path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := &outputs.Batch{}
	lines := []string{`{"a":"\u00e9\"x"}`, `not json at all`, `{"b":1}`}
	for _, l := range lines {
		b.Append([]byte(l))
	}
	if err := o.Send(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	o.Close(context.Background())
	got, _ := os.ReadFile(path)
	if want := lines[0] + "\n" + lines[1] + "\n" + lines[2] + "\n"; string(got) != want {
		t.Fatalf("file holds %q, want %q", got, want)
	}
}

func TestCutsATornLastLineLeftByACrash(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.jsonl")
	os.WriteFile(path, []byte("{\"a\":1}\n{\"b\":"), 0o644)
	o, err := file.New(file.Options{Path: path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := &outputs.Batch{}
	b.Append([]byte(`{"b":2}`))
	o.Send(context.Background(), b)
	o.Close(context.Background())
	got, _ := os.ReadFile(path)
	if string(got) != "{\"a\":1}\n{\"b\":2}\n" {
		t.Fatalf("file holds %q", got)
	}
}

func TestRotatesWithoutSplittingALine(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.jsonl")
	o, err := file.New(file.Options{Path: path, MaxSizeMB: 1, MaxBackups: 0}, nil)
	if err != nil {
		t.Fatal(err)
	}
	line := bytes.Repeat([]byte("x"), 1000)
	for range 5 {
		b := &outputs.Batch{}
		for range 1000 {
			b.Append(append([]byte(`{"p":"`), append(line, `"}`...)...))
		}
		if err := o.Send(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	o.Close(context.Background())
	files, _ := filepath.Glob(filepath.Join(dir, "out*"))
	if len(files) < 4 {
		t.Fatalf("want rotation into several files, got %v", files)
	}
	total := 0
	for _, f := range files {
		data, _ := os.ReadFile(f)
		for _, l := range bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n")) {
			if !json.Valid(l) {
				t.Fatalf("%s holds a split line %.40q", f, l)
			}
			total++
		}
	}
	if total != 5000 {
		t.Fatalf("%d lines in all files, want 5000", total)
	}
}

func TestRotatingManyTimesInABurstLosesNoLine(t *testing.T) {
	// lumberjack names backups to the millisecond: two rotations in one
	// millisecond would overwrite a backup.
	dir := t.TempDir()
	path := filepath.Join(dir, "out.jsonl")
	o, err := file.New(file.Options{Path: path, MaxSizeMB: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	line := `{"pad":"` + string(bytes.Repeat([]byte("p"), 580)) + `"}`
	for range 10 {
		b := &outputs.Batch{}
		for range 3000 {
			b.Append([]byte(line))
		}
		if err := o.Send(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	o.Close(context.Background())
	files, _ := filepath.Glob(filepath.Join(dir, "out*"))
	total := 0
	for _, f := range files {
		data, _ := os.ReadFile(f)
		total += bytes.Count(data, []byte("\n"))
	}
	if total != 30000 {
		t.Fatalf("%d lines in %d files, want 30000 (acknowledged lines lost)", total, len(files))
	}
}

func TestALineLongerThanTheRotationSizeIsRejectedAndTheRestWrittenOnce(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.jsonl")
	o, err := file.New(file.Options{Path: path, MaxSizeMB: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := &outputs.Batch{}
	b.Append([]byte(`{"n":1}`))
	b.Append(append(append([]byte(`{"big":"`), bytes.Repeat([]byte("x"), 2<<20)...), `"}`...))
	b.Append([]byte(`{"n":3}`))
	err = o.Send(context.Background(), b)
	var rej *outputs.RejectedError
	if !errors.As(err, &rej) || len(rej.Lines) != 1 || rej.Lines[0] != 1 {
		t.Fatalf("Send = %v, want line 1 rejected", err)
	}
	o.Close(context.Background())
	got, _ := os.ReadFile(path)
	if string(got) != "{\"n\":1}\n{\"n\":3}\n" {
		t.Fatalf("file holds %.100q", got)
	}
}
