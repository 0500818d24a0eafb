package fluentd

import (
	"context"
	"testing"
	"time"

	"github.com/audittail/audittail/outputs/fluentd/fluentdtest"
	"github.com/audittail/audittail/parser/auditgen"
)

// BenchmarkSend sends batches of 1000 Metadata events to an in-process
// receiver on 127.0.0.1 that acks each one without decoding its events.
func BenchmarkSend(b *testing.B) {
	for _, bc := range []struct {
		name string
		o    Options
	}{
		{"PackedForward", Options{}},
		{"gzip", Options{Compress: "gzip"}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r, err := fluentdtest.Start(fluentdtest.Config{Discard: true})
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			bc.o.Address = r.Addr()
			o, err := New(bc.o, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer o.Close(context.Background())
			batch := genBatch(1, 1000, auditgen.Metadata)
			ctx := context.Background()
			b.SetBytes(int64(batch.Size()))
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for b.Loop() {
				if err := o.Send(ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*batch.Len())/time.Since(start).Seconds(), "events/s")
			if r.Count() != b.N*batch.Len() {
				b.Fatalf("receiver counted %d events, want %d", r.Count(), b.N*batch.Len())
			}
		})
	}
}

// BenchmarkEncode measures building one message of 1000 Metadata events.
func BenchmarkEncode(b *testing.B) {
	for _, gz := range []bool{false, true} {
		name := "PackedForward"
		if gz {
			name = "gzip"
		}
		b.Run(name, func(b *testing.B) {
			e := newEncoder(DefaultTag, gz)
			batch := genBatch(1, 1000, auditgen.Metadata)
			var chunk [24]byte
			newChunk(&chunk)
			now := time.Now()
			b.SetBytes(int64(batch.Size()))
			b.ReportAllocs()
			var msg int
			for b.Loop() {
				msg = len(e.encode(batch, chunk[:], now))
			}
			b.ReportMetric(float64(b.N*batch.Len())/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(float64(msg), "msg-bytes")
		})
	}
}
