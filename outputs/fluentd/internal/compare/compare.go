// Package compare benchmarks the fluentd output against the two Go
// forward-protocol clients it was chosen over, on the same batches and the
// same in-process receiver (docs/decisions/0003-fluentd-output.md):
//
//	cd outputs/fluentd/internal/compare && go test -bench . -benchmem ./...
//
// The two libraries cannot be linked into one binary (both register msgp
// extension type 0 and panic), so each has its own package.
package compare

import (
	"testing"
	"time"

	"github.com/audittail/audittail/outputs"
	"github.com/audittail/audittail/outputs/fluentd/fluentdtest"
	"github.com/audittail/audittail/parser/auditgen"
)

// BatchSize is the number of Metadata events per batch.
const BatchSize = 1000

// MetadataBatch returns a parsed batch of BatchSize Metadata events.
func MetadataBatch() *outputs.Batch {
	g := auditgen.New(1)
	b := &outputs.Batch{}
	ts := time.Date(2026, 11, 23, 10, 54, 44, 0, time.UTC)
	var buf []byte
	for i := range BatchSize {
		buf = g.Append(buf[:0], auditgen.Metadata, ts.Add(time.Duration(i)*time.Microsecond))
		b.Append(buf[:len(buf)-1])
	}
	b.Parse(nil)
	return b
}

// StageTime returns line i's stageTimestamp.
func StageTime(b *outputs.Batch, i int) time.Time {
	raw := b.Event(i).StageTimestamp
	t, _ := time.Parse(time.RFC3339Nano, string(raw))
	return t
}

// Run measures send(batch) per iteration and checks the receiver's count.
func Run(b *testing.B, send func(*outputs.Batch) error, setup func(addr string)) {
	r, err := fluentdtest.Start(fluentdtest.Config{Discard: true})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	setup(r.Addr())
	batch := MetadataBatch()
	b.SetBytes(int64(batch.Size()))
	b.ReportAllocs()
	for b.Loop() {
		if err := send(batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*BatchSize)/b.Elapsed().Seconds(), "events/s")
	if got := r.Count(); got != b.N*BatchSize {
		b.Fatalf("receiver counted %d events, want %d", got, b.N*BatchSize)
	}
}
