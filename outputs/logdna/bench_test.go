package logdna

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/audittail/audittail/outputs/outputstest"
)

// BenchmarkSend posts batches of 1000 realistic events to a receiver that
// reads and discards the body; bytes are the events' raw size.
func BenchmarkSend(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
	}))
	defer srv.Close()
	for _, compress := range []string{"gzip", "none"} {
		b.Run("compress="+compress, func(b *testing.B) {
			o, err := New(Options{URL: srv.URL + "/logs/ingest", IngestionKeyFile: keyFile(b, testKey), Hostname: "cp-1", Compress: compress}, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer o.Close(context.Background())
			batch, _ := outputstest.NewBatch(1, 1000)
			ctx := context.Background()
			b.SetBytes(int64(batch.Size()))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if err := o.Send(ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*batch.Len())/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkEncode measures building the body alone.
func BenchmarkEncode(b *testing.B) {
	batch, _ := outputstest.NewBatch(1, 1000)
	e := encoder{lineLimit: DefaultLineLimit}
	e.app = appendString([]byte(`,"app":`), []byte(DefaultApp))
	var buf []byte
	b.SetBytes(int64(batch.Size()))
	b.ReportAllocs()
	for b.Loop() {
		buf = buf[:0]
		for i := range batch.Len() {
			buf, _, _ = e.appendEntry(buf, batch.Line(i), batch.Event(i), 0)
		}
	}
	b.ReportMetric(float64(b.N*batch.Len())/b.Elapsed().Seconds(), "events/s")
}
