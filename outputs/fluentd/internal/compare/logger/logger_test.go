package logger

import (
	"encoding/json"
	"net"
	"strconv"
	"testing"

	"github.com/fluent/fluent-logger-golang/fluent"
	"github.com/tinylib/msgp/msgp"

	"github.com/audittail/audittail/outputs"
	"github.com/audittail/audittail/outputs/fluentd/internal/compare"
	"github.com/audittail/audittail/parser"
)

func loggerClient(b *testing.B, addr string) *fluent.Fluent {
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	f, err := fluent.New(fluent.Config{FluentHost: host, FluentPort: p, RequestAck: true, SubSecondPrecision: true})
	if err != nil {
		b.Fatal(err)
	}
	return f
}

// BenchmarkLoggerGolang is fluent/fluent-logger-golang in its only
// at-least-once mode (synchronous, RequestAck): one Message-mode write and
// one ack per event; records decoded by encoding/json into maps.
func BenchmarkLoggerGolang(b *testing.B) {
	var f *fluent.Fluent
	compare.Run(b, func(batch *outputs.Batch) error {
		for i := range batch.Len() {
			var m map[string]any
			if err := json.Unmarshal(batch.Line(i), &m); err != nil {
				return err
			}
			if err := f.PostWithTime("kube.audit", compare.StageTime(batch, i), m); err != nil {
				return err
			}
		}
		return nil
	}, func(addr string) { f = loggerClient(b, addr) })
	f.Close()
}

// BenchmarkLoggerGolangRawRecords gives fluent-logger-golang records already
// transcoded (msgp.Raw), leaving only its per-event message and ack.
func BenchmarkLoggerGolangRawRecords(b *testing.B) {
	var f *fluent.Fluent
	var buf []byte
	compare.Run(b, func(batch *outputs.Batch) error {
		for i := range batch.Len() {
			var err error
			if buf, err = parser.AppendMsgpack(buf[:0], batch.Line(i)); err != nil {
				return err
			}
			if err := f.EncodeAndPostData("kube.audit", compare.StageTime(batch, i), msgp.Raw(buf)); err != nil {
				return err
			}
		}
		return nil
	}, func(addr string) { f = loggerClient(b, addr) })
	f.Close()
}
