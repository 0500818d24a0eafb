package otlp

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/audittail/audittail/outputs"
	"github.com/audittail/audittail/parser/auditgen"
)

func metadataBatch(n int) *outputs.Batch {
	g := auditgen.New(1)
	b := &outputs.Batch{}
	var line []byte
	ts := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	for i := range n {
		line = g.Append(line[:0], auditgen.Metadata, ts.Add(time.Duration(i)*time.Millisecond))
		b.Append(line[:len(line)-1])
	}
	b.Parse(nil)
	return b
}

// BenchmarkEncodeMetadata encodes a batch of 1,000 Metadata events into
// one ExportLogsServiceRequest, as Send does before it compresses and
// posts (body: string).
func BenchmarkEncodeMetadata(b *testing.B) {
	batch := metadataBatch(1000)
	h := newHeader([][2]string{{"service.name", "kube-apiserver"}, {"k8s.node.name", "n"}}, "bench")
	var e encoder
	var buf []byte
	b.SetBytes(int64(batch.Size()))
	b.ReportAllocs()
	for b.Loop() {
		buf = h.start(buf)
		now := time.Now()
		for i := range batch.Len() {
			buf = e.appendRecord(buf, batch.Line(i), batch.Event(i), now)
		}
		h.finish(buf)
	}
	b.ReportMetric(float64(b.N)*1000/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkSendMetadata sends batches of 1,000 Metadata events, gzipped,
// to a server on 127.0.0.1 that reads each request and answers 200.
func BenchmarkSendMetadata(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) }))
	defer srv.Close()
	o, err := New(Options{Endpoint: srv.URL, NodeName: "n"}, nil)
	if err != nil {
		b.Fatal(err)
	}
	batch := metadataBatch(1000)
	b.SetBytes(int64(batch.Size()))
	b.ReportAllocs()
	for b.Loop() {
		if err := o.Send(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)*1000/b.Elapsed().Seconds(), "events/s")
}
