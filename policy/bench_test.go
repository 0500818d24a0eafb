package policy

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/audittail/audittail/parser"
	"github.com/audittail/audittail/parser/auditgen"
)

// bench20 is kube-up's GCE policy (17 rules) and three more in front:
// 20 rules, most events matching late.
const bench20 = `
  - level: None
    users: ["system:serviceaccount:monitoring:prometheus"]
    verbs: ["list", "watch"]
  - level: None
    nonResourceURLs: ["/readyz*", "/livez*"]
  - level: Metadata
    userGroups: ["oidc:auditors"]
    resources: [{group: "*", resources: ["*/log", "pods/exec"]}]
`

func benchLines(b *testing.B) [][]byte {
	g := auditgen.New(11)
	ts := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	lines := make([][]byte, 1000)
	for i := range lines {
		lines[i] = g.AppendMixed(nil, ts)
	}
	return lines
}

func benchPolicy(b *testing.B) *Policy {
	p, err := Load(filepath.Join("..", "examples", "audit-policy", "gce-kube-up.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	extra := mustParse(b, header+"rules:"+bench20)
	all := append(append([]Rule{}, extra.Rules...), p.Rules...)
	p.Rules = all
	p.compile()
	if len(p.rules) != 20 {
		b.Fatalf("%d rules", len(p.rules))
	}
	return p
}

// BenchmarkDecide compares parser.Scan alone with Scan plus Decide (20
// rules) and Scan, Decide and Apply (siem.yaml: the events cut are
// rewritten), per event of a production-like generated mix; Decide20 is
// Decide alone on events scanned beforehand.
func BenchmarkDecide(b *testing.B) {
	lines := benchLines(b)
	var size int64
	for _, l := range lines {
		size += int64(len(l))
	}
	p20 := benchPolicy(b)
	siem, err := Load(filepath.Join("..", "examples", "audit-policy", "siem.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	run := func(b *testing.B, f func(line []byte, ev *parser.Event)) {
		var ev parser.Event
		b.ReportAllocs()
		b.SetBytes(size / int64(len(lines)))
		i := 0
		for b.Loop() {
			l := lines[i%len(lines)]
			i++
			if err := parser.Scan(l, &ev); err != nil {
				b.Fatal(err)
			}
			f(l, &ev)
		}
	}
	b.Run("Scan", func(b *testing.B) {
		run(b, func([]byte, *parser.Event) {})
	})
	var sink Decision
	b.Run("ScanDecide20", func(b *testing.B) {
		run(b, func(l []byte, ev *parser.Event) { sink = p20.Decide(l, ev) })
	})
	b.Run("Decide20", func(b *testing.B) {
		evs := make([]parser.Event, len(lines))
		for i, l := range lines {
			if err := parser.Scan(l, &evs[i]); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			k := i % len(lines)
			i++
			sink = p20.Decide(lines[k], &evs[k])
		}
	})
	var buf []byte
	b.Run("ScanDecideApplySIEM", func(b *testing.B) {
		run(b, func(l []byte, ev *parser.Event) {
			d := siem.Decide(l, ev)
			if out, changed := siem.Apply(buf, l, ev, d); changed && out != nil {
				buf = out
			}
		})
	})
	_ = sink
}

func TestDecideAllocs(t *testing.T) {
	p := benchPolicy(&testing.B{})
	g := auditgen.New(5)
	ts := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	var ev parser.Event
	for n := 0; n < 200; n++ {
		l := g.AppendMixed(nil, ts)
		if err := parser.Scan(l, &ev); err != nil {
			t.Fatal(err)
		}
		if a := testing.AllocsPerRun(10, func() { p.Decide(l, &ev) }); a != 0 {
			t.Fatalf("%v allocations: %s", a, l)
		}
	}
}

// BenchmarkDecideRatio measures Scan alone and Scan plus Decide (20
// rules) in alternating blocks of the same 1,000 events, so that the
// machine's drift (other processes, frequency) falls on both alike, and
// reports their ratio (decide/scan, the bound is 1.2) beside the
// time per event of each.
func BenchmarkDecideRatio(b *testing.B) {
	lines := benchLines(b)
	p20 := benchPolicy(b)
	var ev parser.Event
	var sink Decision
	var scan, decide time.Duration
	block := func(f func(l []byte)) time.Duration {
		start := time.Now()
		for _, l := range lines {
			if err := parser.Scan(l, &ev); err != nil {
				b.Fatal(err)
			}
			f(l)
		}
		return time.Since(start)
	}
	b.ReportAllocs()
	for b.Loop() {
		scan += block(func([]byte) {})
		decide += block(func(l []byte) { sink = p20.Decide(l, &ev) })
	}
	_ = sink
	n := float64(b.N) * float64(len(lines))
	b.ReportMetric(float64(scan.Nanoseconds())/n, "scan-ns/event")
	b.ReportMetric(float64(decide.Nanoseconds())/n, "decide-ns/event")
	b.ReportMetric(float64(decide)/float64(scan), "ratio")
	b.ReportMetric(0, "ns/op")
}
