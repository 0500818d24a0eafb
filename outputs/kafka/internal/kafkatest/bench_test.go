package kafkatest

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/audittail/audittail/outputs"
	"github.com/audittail/audittail/outputs/kafka"
	"github.com/audittail/audittail/parser/auditgen"
)

// metadataBatch returns a parsed batch of n Metadata-level events.
func metadataBatch(n int) *outputs.Batch {
	g := auditgen.New(7)
	b := &outputs.Batch{}
	ts := time.Date(2026, 11, 23, 10, 54, 44, 0, time.UTC)
	var buf []byte
	for i := range n {
		buf = g.Append(buf[:0], auditgen.Metadata, ts.Add(time.Duration(i)*time.Millisecond))
		b.Append(buf[:len(buf)-1])
	}
	b.Parse(nil)
	return b
}

// BenchmarkKafka sends batches of 1000 Metadata events into kfake on
// 127.0.0.1 (3 brokers, 3 partitions, key auditID, acks all, idempotent:
// each broker leads a partition, as in a production cluster); bytes are
// the events' raw size. store=no is kfake's BlackholeProduce (sequences
// checked, records not kept): mostly the output and franz-go. Both share
// the 2 cores with kfake itself.
func BenchmarkKafka(b *testing.B) {
	for _, bc := range []struct {
		name string
		opts []kfake.Opt
	}{
		{"store=yes", nil},
		{"store=no", []kfake.Opt{kfake.BlackholeProduce()}},
	} {
		for _, compression := range []string{"zstd", "none"} {
			b.Run(bc.name+"/compression="+compression, func(b *testing.B) {
				c := newCluster(b, append([]kfake.Opt{kfake.NumBrokers(3)}, bc.opts...)...)
				brokers := c.ListenAddrs()
				createTopic(b, brokers, "audit", 3)
				for p := range int32(3) { // kfake picks leaders at random
					if err := c.MoveTopicPartition("audit", p, p); err != nil {
						b.Fatal(err)
					}
				}
				o, err := kafka.New(kafka.Options{Brokers: brokers, Topic: "audit", Compression: compression}, nil)
				if err != nil {
					b.Fatal(err)
				}
				defer o.Close(context.Background())
				// Two batches in turn, as the agent has them: the next is
				// prepared (its records built) while one is in flight.
				cur, next := metadataBatch(1000), metadataBatch(1000)
				ctx := context.Background()
				if err := o.Send(ctx, cur); err != nil { // connect, load metadata
					b.Fatal(err)
				}
				o.Prepare(cur)
				b.SetBytes(int64(cur.Size()))
				b.ReportAllocs()
				b.ResetTimer()
				done := make(chan error, 1)
				for b.Loop() {
					go func() { done <- o.Send(ctx, cur) }()
					o.Prepare(next)
					if err := <-done; err != nil {
						b.Fatal(err)
					}
					cur, next = next, cur
				}
				b.ReportMetric(float64(b.N*cur.Len())/b.Elapsed().Seconds(), "events/s")
			})
		}
	}
}
