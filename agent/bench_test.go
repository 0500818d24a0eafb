package agent

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/audittail/audittail/outputs"
	"github.com/audittail/audittail/outputs/null"
	"github.com/audittail/audittail/parser/auditgen"
)

// benchFile writes (once per process) a file of Metadata-level events of
// about BENCH_MB megabytes (default 500) and returns its path and size.
func benchFile(b *testing.B) (string, int64) {
	b.Helper()
	mb := 500
	if s := os.Getenv("BENCH_MB"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			b.Fatalf("BENCH_MB: %v", err)
		}
		mb = n
	}
	dir := os.Getenv("BENCH_DIR")
	if dir == "" {
		dir = b.TempDir()
	}
	path := filepath.Join(dir, "metadata-"+strconv.Itoa(mb)+"mb.log")
	if fi, err := os.Stat(path); err == nil {
		return path, fi.Size()
	}
	f, err := os.Create(path + ".tmp")
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	g := auditgen.New(99)
	ts := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	var buf []byte
	var size int64
	for size < int64(mb)<<20 {
		buf = g.Append(buf[:0], auditgen.Metadata, ts)
		ts = ts.Add(time.Millisecond)
		w.Write(buf)
		size += int64(len(buf))
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	f.Close()
	if err := os.Rename(path+".tmp", path); err != nil {
		b.Fatal(err)
	}
	return path, size
}

// BenchmarkCat times `cat file >/dev/null` on the same file: the baseline
// for BenchmarkFollow's ratio.
func BenchmarkCat(b *testing.B) {
	path, size := benchFile(b)
	warm(b, path)
	b.SetBytes(size)
	b.ResetTimer()
	for range b.N {
		cmd := exec.Command("cat", path)
		cmd.Stdout, _ = os.OpenFile(os.DevNull, os.O_WRONLY, 0)
		if err := cmd.Run(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFollow reads the file through the whole agent (follower,
// batcher, sender, checkpoint after every batch) into the null output.
func BenchmarkFollow(b *testing.B) {
	path, size := benchFile(b)
	warm(b, path)
	b.SetBytes(size)
	b.ReportAllocs()
	var lines int64
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		cfg := &Config{
			StateDir: b.TempDir(),
			Inputs:   []InputConfig{{Path: path, StartAt: StartBeginning}},
			Outputs:  []outputs.Config{{Name: "null", Type: "null"}},
		}
		if s := os.Getenv("BENCH_CHECKPOINT_INTERVAL"); s != "" {
			d, err := time.ParseDuration(s)
			if err != nil {
				b.Fatal(err)
			}
			cfg.CheckpointInterval = d
		}
		cfg.Defaults()
		out := null.New()
		log := slog.New(slog.NewTextHandler(io.Discard, nil))
		a, err := New(cfg, log, func(outputs.Config) (outputs.Output, error) { return out, nil }, Options{StopAtEOF: true})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if err := a.Run(context.Background()); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if out.Bytes() != size {
			b.Fatalf("delivered %d bytes of %d", out.Bytes(), size)
		}
		lines += out.Events()
		b.StartTimer()
	}
	b.ReportMetric(float64(lines)/b.Elapsed().Seconds(), "lines/s")
}

// warm reads the file once so both benchmarks start from the page cache.
func warm(b *testing.B, path string) {
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	io.Copy(io.Discard, f)
}

// BenchmarkFollowerOnly measures the follower alone: reading, splitting
// lines in place and filling batches, which a consumer hands straight back
// (no parsing, no output, no checkpoint).
func BenchmarkFollowerOnly(b *testing.B) {
	path, size := benchFile(b)
	warm(b, path)
	b.SetBytes(size)
	b.ReportAllocs()
	var lines int64
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		cfg := &Config{
			StateDir: b.TempDir(),
			Inputs:   []InputConfig{{Path: path, StartAt: StartBeginning}},
			Outputs:  []outputs.Config{{Name: "null", Type: "null"}},
		}
		cfg.Defaults()
		store, err := OpenStore(cfg.StateDir, false)
		if err != nil {
			b.Fatal(err)
		}
		p := newPipeline(cfg.Outputs[0], null.New(), cfg, store, slog.New(slog.NewTextHandler(io.Discard, nil)))
		f := p.inputs[0].follower
		f.stopAt = func(*source) bool { return true }
		if err := f.resolveStart(nil, StartBeginning); err != nil {
			b.Fatal(err)
		}
		done := make(chan int64)
		go func() {
			var n int64
			for pb := range p.ready {
				n += int64(pb.Len())
				pb.Reset()
				p.free <- pb
			}
			done <- n
		}()
		b.StartTimer()
		if err := f.follow(context.Background()); err != nil {
			b.Fatal(err)
		}
		close(p.ready)
		n := <-done
		b.StopTimer()
		lines += n
		b.StartTimer()
	}
	b.ReportMetric(float64(lines)/b.Elapsed().Seconds(), "lines/s")
}
