package compare

import (
	"context"
	"testing"

	"github.com/audittail/audittail/outputs"
	"github.com/audittail/audittail/outputs/fluentd"
)

// BenchmarkAudittail is the fluentd output: one PackedForward message and
// one ack per batch, records transcoded by parser.AppendMsgpack.
func BenchmarkAudittail(b *testing.B) {
	var o *fluentd.Output
	Run(b, func(batch *outputs.Batch) error {
		return o.Send(context.Background(), batch)
	}, func(addr string) {
		var err error
		if o, err = fluentd.New(fluentd.Options{Address: addr}, nil); err != nil {
			b.Fatal(err)
		}
	})
	o.Close(context.Background())
}
