package pargzip

import (
	"bytes"
	"compress/gzip"
	"io"
	"math/rand/v2"
	"os/exec"
	"testing"
	"time"

	kgzip "github.com/klauspost/compress/gzip"

	"github.com/audittail/audittail/parser/auditgen"
)

// events returns about size bytes of Metadata audit events, one per line.
func events(size int) []byte {
	g := auditgen.New(3)
	ts := time.Date(2026, 12, 4, 4, 0, 0, 0, time.UTC)
	var b []byte
	for i := 0; len(b) < size; i++ {
		b = g.Append(b, auditgen.Metadata, ts.Add(time.Duration(i)*time.Millisecond))
	}
	return b
}

// inputs are bodies around the segment boundaries, compressible and not.
func inputs() map[string][]byte {
	rnd := make([]byte, 3*MinSegment+17)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range rnd {
		rnd[i] = byte(r.Uint32())
	}
	return map[string][]byte{
		"empty":             nil,
		"one byte":          []byte("x"),
		"under one segment": events(MinSegment - 1),
		"two segments":      events(2*MinSegment + 7),
		"5MB of events":     events(5 << 20),
		"random":            rnd,
	}
}

// The result is one gzip member that the standard library's reader (an
// independent decoder: not klauspost's) decodes to the input, with its
// CRC and size checked, for any number of segments.
func TestTheStandardLibraryDecodesEveryBody(t *testing.T) {
	for name, in := range inputs() {
		for _, workers := range []int{1, 2, 3, 4, 8} {
			c := &Compressor{level: 1, workers: workers}
			for range 2 { // and again with the buffers reused
				out, err := c.Compress(in)
				if err != nil {
					t.Fatal(err)
				}
				zr, err := gzip.NewReader(bytes.NewReader(out))
				if err != nil {
					t.Fatalf("%s, %d workers: %v", name, workers, err)
				}
				zr.Multistream(false) // one member, nothing after it
				got, err := io.ReadAll(zr)
				if err != nil {
					t.Fatalf("%s, %d workers: %v", name, workers, err)
				}
				if !bytes.Equal(got, in) {
					t.Fatalf("%s, %d workers: decoded %d bytes, want the %d given", name, workers, len(got), len(in))
				}
				if rest, _ := io.ReadAll(zr); len(rest) != 0 {
					t.Fatalf("%s: bytes after the member", name)
				}
			}
		}
	}
}

// gzip(1) is a second independent decoder, with its own CRC and length
// checks (-t would only test; -dc also gives the bytes back).
func TestGzipCommandDecodesTheBody(t *testing.T) {
	gz, err := exec.LookPath("gzip")
	if err != nil {
		t.Skip("no gzip command")
	}
	in := events(1 << 20)
	out, err := (&Compressor{level: 1, workers: 4}).Compress(in)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(gz, "-dc")
	cmd.Stdin = bytes.NewReader(out)
	got, err := cmd.Output()
	if err != nil {
		t.Fatalf("gzip -dc: %v", err)
	}
	if !bytes.Equal(got, in) {
		t.Fatalf("gzip -dc gave %d bytes, want %d", len(got), len(in))
	}
}

// A segment starts without history: on a 1 MiB batch of Metadata events
// (about 100 KB gzipped) a second one costs 1.5%, and more do not cost
// much more each.
func TestSegmentsCostLittleRatio(t *testing.T) {
	in := events(1 << 20)
	one, _ := (&Compressor{level: 1, workers: 1}).Compress(in)
	n1 := len(one)
	two, _ := (&Compressor{level: 1, workers: 2}).Compress(in)
	four, _ := (&Compressor{level: 1, workers: 4}).Compress(in)
	if len(two) > n1+n1/50 || len(four) > n1+n1/20 {
		t.Errorf("2 segments: %d bytes, 4: %d, 1: %d: over 2%% (two) or 5%% (four) larger", len(two), len(four), n1)
	}
}

// FuzzCompress cuts its inputs into segments of as little as 1 byte, so
// that small inputs are several segments too.
func FuzzCompress(f *testing.F) {
	f.Add([]byte(`{"kind":"Event"}`), uint8(2), uint16(4))
	f.Add(events(3*MinSegment), uint8(3), uint16(0))
	f.Add(events(4<<10), uint8(7), uint16(100))
	f.Fuzz(func(t *testing.T, in []byte, workers uint8, seg uint16) {
		defer func(m int) { minSegment = m }(minSegment)
		if seg > 0 {
			minSegment = int(seg)
		}
		c := &Compressor{level: 1, workers: int(workers%8) + 1}
		out, err := c.Compress(in)
		if err != nil {
			t.Fatal(err)
		}
		zr, err := gzip.NewReader(bytes.NewReader(out))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(zr)
		if err != nil || !bytes.Equal(got, in) {
			t.Fatalf("round trip: %v, %d bytes of %d", err, len(got), len(in))
		}
	})
}

// BenchmarkCompress gzips 1 MiB of Metadata events (a batch's body) at
// level 1: klauspost's gzip.Writer on one core (the baseline, what the
// outputs did before), then this package with 1 and GOMAXPROCS segments.
func BenchmarkCompress(b *testing.B) {
	in := events(1 << 20)
	b.Run("baseline=gzip.Writer", func(b *testing.B) {
		var buf bytes.Buffer
		zw, _ := kgzip.NewWriterLevel(nil, 1)
		b.SetBytes(int64(len(in)))
		for b.Loop() {
			buf.Reset()
			zw.Reset(&buf)
			zw.Write(in)
			zw.Close()
		}
		b.ReportMetric(float64(len(in))/float64(buf.Len()), "ratio")
	})
	for _, workers := range []int{1, 0} {
		name := "segments=1"
		if workers == 0 {
			name = "segments=GOMAXPROCS"
		}
		b.Run(name, func(b *testing.B) {
			c := &Compressor{level: 1, workers: workers}
			b.SetBytes(int64(len(in)))
			var out []byte
			for b.Loop() {
				out, _ = c.Compress(in)
			}
			b.ReportMetric(float64(len(in))/float64(len(out)), "ratio")
		})
	}
}
