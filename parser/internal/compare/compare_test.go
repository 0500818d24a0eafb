package compare

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

func corpus(tb testing.TB, name string) *Corpus {
	tb.Helper()
	cs, err := Corpora()
	if err != nil {
		tb.Fatalf("corpora: %v", err)
	}
	return cs[name]
}

func TestEveryContenderReadsEveryCorpus(t *testing.T) {
	for _, name := range CorpusNames {
		c := corpus(t, name)
		if len(c.Lines) == 0 {
			t.Fatalf("corpus %s is empty", name)
		}
		for _, ct := range Contenders() {
			fn := ct.New()
			for i, l := range c.Lines[:min(len(c.Lines), 500)] {
				if err := fn(l); err != nil {
					t.Fatalf("%s on %s line %d: %v", ct.Name, name, i, err)
				}
			}
		}
	}
}

func benchAll(b *testing.B, name string) {
	c := corpus(b, name)
	for _, ct := range Contenders() {
		b.Run(ct.Name, func(b *testing.B) { RunCorpus(b, c, ct.New()) })
	}
}

func BenchmarkScanMetadata(b *testing.B) { benchAll(b, "Metadata") }
func BenchmarkScanMixed(b *testing.B)    { benchAll(b, "Mixed") }
func BenchmarkScanReal(b *testing.B)     { benchAll(b, "RealLiggitt") }

// TestPrintBenchTable prints, in one run, every contender on each corpus
// with MB/s, ns/event, allocs/event and Scan's speed ratio to it. Each
// contender runs in AUDITTAIL_BENCH_ROUNDS interleaved rounds (default 3)
// and its best round counts, which damps noise from other work on the
// machine. It runs only when AUDITTAIL_BENCH_TABLE is set (make
// bench-parser).
func TestPrintBenchTable(t *testing.T) {
	if os.Getenv("AUDITTAIL_BENCH_TABLE") == "" {
		t.Skip("set AUDITTAIL_BENCH_TABLE=1 to print the parser benchmark table")
	}
	rounds := 3
	if r, err := strconv.Atoi(os.Getenv("AUDITTAIL_BENCH_ROUNDS")); err == nil && r > 0 {
		rounds = r
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1)) // one core, GC included
	var out strings.Builder
	host, _ := os.Hostname()
	fmt.Fprintf(&out, "parser benchmark %s on %s (%s, %d CPUs), %s %s/%s, GOMAXPROCS=1, best of %d rounds\n",
		time.Now().UTC().Format("2006-01-02"), host, cpuModel(), runtime.NumCPU(), runtime.Version(), runtime.GOOS, runtime.GOARCH, rounds)
	for _, name := range CorpusNames {
		c := corpus(t, name)
		cs := Contenders()
		best := make([]testing.BenchmarkResult, len(cs))
		for r := 0; r < rounds; r++ {
			for k, ct := range cs {
				res := testing.Benchmark(func(b *testing.B) { RunCorpus(b, c, ct.New()) })
				if r == 0 || res.NsPerOp() < best[k].NsPerOp() {
					best[k] = res
				}
			}
		}
		fmt.Fprintf(&out, "\ncorpus %s: %d events, %.1f MB, %d bytes/event\n", name, len(c.Lines), float64(c.Bytes)/1e6, c.Bytes/len(c.Lines))
		fmt.Fprintf(&out, "%-18s %10s %12s %13s %12s\n", "parser", "MB/s", "ns/event", "allocs/event", "Scan speedup")
		scanNs := float64(best[0].T.Nanoseconds()) / float64(best[0].N)
		for k, ct := range cs {
			r := best[k]
			ns := float64(r.T.Nanoseconds()) / float64(r.N)
			mbs := float64(r.Bytes) * float64(r.N) / r.T.Seconds() / 1e6
			fmt.Fprintf(&out, "%-18s %10.0f %12.0f %13d %11.2fx\n", ct.Name, mbs, ns, r.AllocsPerOp(), ns/scanNs)
		}
	}
	fmt.Print(out.String())
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}
