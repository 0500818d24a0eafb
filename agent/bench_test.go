package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/audittail/audittail/outputs"
	"github.com/audittail/audittail/outputs/null"
	"github.com/audittail/audittail/parser/auditgen"
	srcfile "github.com/audittail/audittail/source/file"
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

// BenchmarkFollowerOnly measures the file source alone: reading,
// splitting lines in place and filling chunks, which a consumer hands
// straight back (no parsing, no output, no checkpoint).
func BenchmarkFollowerOnly(b *testing.B) {
	path, size := benchFile(b)
	warm(b, path)
	b.SetBytes(size)
	b.ReportAllocs()
	var lines int64
	b.ResetTimer()
	for range b.N {
		r, err := srcfile.Follow(srcfile.Config{Path: path, StartAt: "beginning", StopAtEOF: true}, nil)
		if err != nil {
			b.Fatal(err)
		}
		for {
			c, err := r.Next(context.Background())
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			lines += int64(c.Len())
			c.Release()
		}
		r.Close()
	}
	b.ReportMetric(float64(lines)/b.Elapsed().Seconds(), "lines/s")
}

// BenchmarkFanOut reads the file through the whole agent into 1 and into 3
// null outputs and reports the CPU (user+system) the process spent per GB
// read: one read and one parse per input feed every output, so three cost
// little more than one.
func BenchmarkFanOut(b *testing.B) {
	path, size := benchFile(b)
	warm(b, path)
	for _, n := range []int{1, 3} {
		b.Run(fmt.Sprintf("outputs=%d", n), func(b *testing.B) {
			b.SetBytes(size)
			var cpu time.Duration
			for range b.N {
				b.StopTimer()
				cfg := &Config{StateDir: b.TempDir(), Inputs: []InputConfig{{Path: path, StartAt: StartBeginning}}}
				outs := map[string]*null.Output{}
				for i := range n {
					name := fmt.Sprintf("null%d", i)
					cfg.Outputs = append(cfg.Outputs, outputs.Config{Name: name, Type: "null"})
					outs[name] = null.New()
				}
				cfg.Defaults()
				log := slog.New(slog.NewTextHandler(io.Discard, nil))
				a, err := New(cfg, log, func(c outputs.Config) (outputs.Output, error) { return outs[c.Name], nil }, Options{StopAtEOF: true})
				if err != nil {
					b.Fatal(err)
				}
				before := cpuTime()
				b.StartTimer()
				if err := a.Run(context.Background()); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				cpu += cpuTime() - before
				for name, o := range outs {
					if o.Bytes() != size {
						b.Fatalf("%s got %d bytes of %d", name, o.Bytes(), size)
					}
				}
				b.StartTimer()
			}
			b.ReportMetric(cpu.Seconds()/(float64(size)*float64(b.N)/1e9), "cpu-s/GB")
		})
	}
}

// cpuTime is the user and system CPU time the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
