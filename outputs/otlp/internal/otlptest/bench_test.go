package otlptest

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"

	"github.com/audittail/audittail/outputs"
	"github.com/audittail/audittail/outputs/otlp"
	"github.com/audittail/audittail/outputs/outputstest"
	"github.com/audittail/audittail/parser"
)

// BenchmarkEncode compares the output's hand encoding (protowire) with
// building the same records with the Collector's pdata and marshalling
// them, per batch of 1,000 mixed events: the measurement behind
// docs/decisions/0007-otlp-encoding.md. The output's row includes the
// request to a discarding server on 127.0.0.1 (compression none).
func BenchmarkEncode(b *testing.B) {
	batch, _ := outputstest.NewBatch(3, 1000)
	b.Run("protowire-send", func(b *testing.B) {
		var n atomic.Int64
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			m, _ := io.Copy(io.Discard, r.Body)
			n.Add(m)
		}))
		defer srv.Close()
		o, err := otlp.New(otlp.Options{Endpoint: srv.URL, Compression: "none", NodeName: "n"}, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.SetBytes(int64(batch.Size()))
		for b.Loop() {
			if err := o.Send(context.Background(), batch); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(n.Load())/float64(b.N)/1000, "proto-bytes/event")
	})
	b.Run("pdata-marshal", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(batch.Size()))
		for b.Loop() {
			if _, err := pdataRequest(batch).MarshalProto(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// pdataRequest builds the records the output sends, with pdata.
func pdataRequest(batch *outputs.Batch) plogotlp.ExportRequest {
	logs := plog.NewLogs()
	rl := logs.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr("service.name", "kube-apiserver")
	rl.Resource().Attributes().PutStr("k8s.node.name", "n")
	sl := rl.ScopeLogs().AppendEmpty()
	sl.Scope().SetName("audittail")
	now := pcommon.NewTimestampFromTime(time.Now())
	str := func(raw []byte) string { s, _ := parser.Unquote(nil, raw); return string(s) }
	for i := range batch.Len() {
		ev := batch.Event(i)
		r := sl.LogRecords().AppendEmpty()
		r.SetObservedTimestamp(now)
		if t, err := parser.ParseTime(ev.StageTimestamp); err == nil {
			r.SetTimestamp(pcommon.NewTimestampFromTime(t))
		}
		r.SetSeverityNumber(plog.SeverityNumberInfo)
		r.SetSeverityText("INFO")
		r.Body().SetStr(string(batch.Line(i)))
		a := r.Attributes()
		for k, v := range map[string][]byte{"k8s.audit.event.id": ev.AuditID, "k8s.audit.event.level": ev.Level, "k8s.audit.event.stage": ev.Stage,
			"k8s.audit.event.verb": ev.Verb, "k8s.audit.event.user_agent": ev.UserAgent, "k8s.audit.event.request.uri": ev.RequestURI,
			"k8s.audit.event.object_ref.resource": ev.ObjectRef.Resource, "k8s.audit.event.object_ref.namespace": ev.ObjectRef.Namespace,
			"k8s.audit.event.object_ref.name": ev.ObjectRef.Name, "k8s.user.username": ev.Username} {
			if v != nil {
				a.PutStr(k, str(v))
			}
		}
		if ev.ResponseCode != 0 {
			a.PutInt("k8s.audit.event.response.code", int64(ev.ResponseCode))
		}
	}
	return plogotlp.NewExportRequestFromLogs(logs)
}
