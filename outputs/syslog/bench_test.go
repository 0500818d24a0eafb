package syslog

import (
	"context"
	"io"
	"net"
	"testing"

	"github.com/audittail/audittail/outputs/outputstest"
)

// BenchmarkSend sends batches of 1000 realistic events (mixed levels) to a
// receiver on 127.0.0.1 that reads and discards the stream.
func BenchmarkSend(b *testing.B) {
	for _, scheme := range []string{"tcp", "tls"} {
		b.Run(scheme, func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			var p *pki
			o := Options{Address: scheme + "://" + ln.Addr().String(), Hostname: testHost}
			if scheme == "tls" {
				p = testPKI(b)
				o.TLS.CAFile = p.caFile
			}
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					if p != nil {
						c = tlsServer(c, p)
					}
					go func() {
						io.Copy(io.Discard, c)
						c.Close()
					}()
				}
			}()
			out, err := New(o, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer out.Close(context.Background())
			batch, _ := outputstest.NewBatch(1, 1000)
			ctx := context.Background()
			if err := out.Send(ctx, batch); err != nil { // connect
				b.Fatal(err)
			}
			b.SetBytes(int64(batch.Size()))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if err := out.Send(ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*batch.Len())/b.Elapsed().Seconds(), "events/s")
		})
	}
}
