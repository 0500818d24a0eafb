package parser

import (
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/audittail/audittail/parser/auditgen"
)

// realDir holds the real audit events (testdata/real at the repository
// root, SOURCES.md there says where each comes from); it is required.
const realDir = "../testdata/real"

// realFiles returns the real data files (not SOURCES.md), sorted.
func realFiles(t testing.TB) []string {
	t.Helper()
	ents, err := os.ReadDir(realDir)
	if err != nil {
		t.Fatalf("real audit events are required: %v", err)
	}
	var names []string
	for _, e := range ents {
		if e.IsDir() || strings.HasSuffix(e.Name(), ".md") {
			continue
		}
		names = append(names, filepath.Join(realDir, e.Name()))
	}
	sort.Strings(names)
	if len(names) == 0 {
		t.Fatalf("no files in %s", realDir)
	}
	return names
}

// seedInputs returns every input the differential tests start from: each
// file of the real data and of testdata/seeds whole, and each of its lines.
func seedInputs(t testing.TB) [][]byte {
	t.Helper()
	files := realFiles(t)
	own, err := filepath.Glob("testdata/seeds/*")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, own...)
	var in [][]byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		in = append(in, b)
		for _, l := range bytes.SplitAfter(b, []byte("\n")) {
			if len(l) > 0 {
				in = append(in, l)
			}
		}
	}
	for _, c := range edgeCases() {
		if !c.noMatch {
			in = append(in, []byte(c.in))
		}
	}
	return in
}

func TestScanAgreesWithEncodingJSONOnSeeds(t *testing.T) {
	for _, in := range seedInputs(t) {
		if bad := diffScan(in); bad != nil {
			t.Errorf("input %.200q:\n  %s", in, strings.Join(bad, "\n  "))
		}
	}
}

func FuzzScan(f *testing.F) {
	for _, in := range seedInputs(f) {
		f.Add(in)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if bad := diffScan(in); bad != nil {
			t.Errorf("input %q:\n  %s", in, strings.Join(bad, "\n  "))
		}
	})
}

// TestScanAgreesWithEncodingJSONOnGeneratedCorpora is the "no field
// disagrees on any corpus line" acceptance check.
func TestScanAgreesWithEncodingJSONOnGeneratedCorpora(t *testing.T) {
	n := 10000
	if testing.Short() {
		n = 1000
	}
	ts := time.Date(2026, 11, 20, 8, 15, 0, 0, time.UTC)
	for _, corpus := range []struct {
		name string
		gen  func(g *auditgen.Generator, dst []byte) []byte
	}{
		{"metadata", func(g *auditgen.Generator, dst []byte) []byte { return g.Append(dst, auditgen.Metadata, ts) }},
		{"mixed", func(g *auditgen.Generator, dst []byte) []byte { return g.AppendMixed(dst, ts) }},
	} {
		t.Run(corpus.name, func(t *testing.T) {
			g := auditgen.New(42)
			var line []byte
			disagree := 0
			for i := 0; i < n; i++ {
				line = corpus.gen(g, line[:0])
				if bad := diffScan(line); bad != nil {
					disagree++
					if disagree <= 5 {
						t.Errorf("line %d %.300q:\n  %s", i, line, strings.Join(bad, "\n  "))
					}
				}
			}
			if disagree > 0 {
				t.Errorf("%d of %d lines disagree", disagree, n)
			}
		})
	}
}

func TestScanDoesNotAllocate(t *testing.T) {
	g := auditgen.New(1)
	ts := time.Date(2026, 11, 20, 8, 15, 0, 0, time.UTC)
	var lines [][]byte
	for i := 0; i < 50; i++ {
		lines = append(lines, g.AppendMixed(nil, ts))
	}
	lines = append(lines, []byte(`{"k\u0069nd":"Event","user":{"us\u0065rname":"a"}}`))
	var ev Event
	k := 0
	allocs := testing.AllocsPerRun(200, func() {
		if err := Scan(lines[k%len(lines)], &ev); err != nil {
			t.Fatal(err)
		}
		k++
	})
	if allocs != 0 {
		t.Errorf("Scan allocates %v times per call, want 0", allocs)
	}
}

func TestScanDoesNotAllocateOnLongEscapedKeys(t *testing.T) {
	long := strings.Repeat(`\u00e9`, 24) // decodes to 48 bytes, raw 144
	longer := strings.Repeat(`\u00e9`, 200)
	line := []byte(`{"` + long + `":1,"` + longer + `":2,"user":{"` + long + `":3,"usern\u0061me":"x"},"k\u0069nd":"E"}`)
	var ev Event
	allocs := testing.AllocsPerRun(100, func() {
		if err := Scan(line, &ev); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Scan allocates %v times per call, want 0", allocs)
	}
	if string(ev.Kind) != "E" || string(ev.Username) != "x" {
		t.Errorf("escaped keys not matched: %+v", ev)
	}
}
