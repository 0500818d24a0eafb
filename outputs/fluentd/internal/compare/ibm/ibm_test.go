package ibm

import (
	"encoding/json"
	"testing"

	ibmclient "github.com/IBM/fluent-forward-go/fluent/client"
	"github.com/IBM/fluent-forward-go/fluent/protocol"
	"github.com/tinylib/msgp/msgp"

	"github.com/audittail/audittail/outputs"
	"github.com/audittail/audittail/outputs/fluentd/internal/compare"
	"github.com/audittail/audittail/parser"
)

func ibmClient(b *testing.B, addr string) *ibmclient.Client {
	c := ibmclient.New(ibmclient.ConnectionOptions{
		Factory:    &ibmclient.ConnFactory{Network: "tcp", Address: addr},
		RequireAck: true,
	})
	if err := c.Connect(); err != nil {
		b.Fatal(err)
	}
	return c
}

// BenchmarkIBMEntryList is IBM/fluent-forward-go used as documented: each
// line decoded by encoding/json into a map, an EntryList sent with
// SendPacked (one PackedForward message and one ack per batch).
func BenchmarkIBMEntryList(b *testing.B) {
	var c *ibmclient.Client
	entries := make(protocol.EntryList, compare.BatchSize)
	compare.Run(b, func(batch *outputs.Batch) error {
		for i := range batch.Len() {
			var m map[string]any
			if err := json.Unmarshal(batch.Line(i), &m); err != nil {
				return err
			}
			entries[i] = protocol.EntryExt{Timestamp: protocol.EventTime{Time: compare.StageTime(batch, i)}, Record: m}
		}
		return c.SendPacked("kube.audit", entries)
	}, func(addr string) { c = ibmClient(b, addr) })
	c.Disconnect()
}

// BenchmarkIBMRawRecords feeds IBM/fluent-forward-go records already
// transcoded by parser.AppendMsgpack (msgp.Raw), to separate its framing
// and ack handling from the JSON decoding.
func BenchmarkIBMRawRecords(b *testing.B) {
	var c *ibmclient.Client
	entries := make(protocol.EntryList, compare.BatchSize)
	var buf []byte
	compare.Run(b, func(batch *outputs.Batch) error {
		buf = buf[:0]
		offs := make([]int, 0, compare.BatchSize+1)
		for i := range batch.Len() {
			offs = append(offs, len(buf))
			var err error
			if buf, err = parser.AppendMsgpack(buf, batch.Line(i)); err != nil {
				return err
			}
		}
		offs = append(offs, len(buf))
		for i := range batch.Len() {
			entries[i] = protocol.EntryExt{Timestamp: protocol.EventTime{Time: compare.StageTime(batch, i)}, Record: msgp.Raw(buf[offs[i]:offs[i+1]])}
		}
		return c.SendPacked("kube.audit", entries)
	}, func(addr string) { c = ibmClient(b, addr) })
	c.Disconnect()
}
