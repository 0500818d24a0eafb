package parser

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/audittail/audittail/parser/auditgen"
)

// fullEvent is audit.k8s.io/v1 Event as k8s.io/apiserver declares it, with
// the object fields as json.RawMessage (what a shipper would keep).
type fullEvent struct {
	Kind       string `json:"kind"`
	APIVersion string `json:"apiVersion"`
	Level      string `json:"level"`
	AuditID    string `json:"auditID"`
	Stage      string `json:"stage"`
	RequestURI string `json:"requestURI"`
	Verb       string `json:"verb"`
	User       struct {
		Username string              `json:"username"`
		UID      string              `json:"uid"`
		Groups   []string            `json:"groups"`
		Extra    map[string][]string `json:"extra"`
	} `json:"user"`
	ImpersonatedUser *struct {
		Username string   `json:"username"`
		Groups   []string `json:"groups"`
	} `json:"impersonatedUser"`
	SourceIPs []string `json:"sourceIPs"`
	UserAgent string   `json:"userAgent"`
	ObjectRef *struct {
		Resource        string `json:"resource"`
		Namespace       string `json:"namespace"`
		Name            string `json:"name"`
		UID             string `json:"uid"`
		APIGroup        string `json:"apiGroup"`
		APIVersion      string `json:"apiVersion"`
		ResourceVersion string `json:"resourceVersion"`
		Subresource     string `json:"subresource"`
	} `json:"objectRef"`
	ResponseStatus *struct {
		Status  string `json:"status"`
		Message string `json:"message"`
		Reason  string `json:"reason"`
		Code    int32  `json:"code"`
	} `json:"responseStatus"`
	RequestObject            json.RawMessage   `json:"requestObject"`
	ResponseObject           json.RawMessage   `json:"responseObject"`
	RequestReceivedTimestamp string            `json:"requestReceivedTimestamp"`
	StageTimestamp           string            `json:"stageTimestamp"`
	Annotations              map[string]string `json:"annotations"`
}

// slimEvent has the seven fields a typical shipper filters on.
type slimEvent struct {
	AuditID    string `json:"auditID"`
	Stage      string `json:"stage"`
	Verb       string `json:"verb"`
	RequestURI string `json:"requestURI"`
	User       struct {
		Username string `json:"username"`
	} `json:"user"`
	ObjectRef struct {
		Resource  string `json:"resource"`
		Namespace string `json:"namespace"`
	} `json:"objectRef"`
}

type corpus struct {
	lines [][]byte
	bytes int
}

var (
	corpusOnce sync.Once
	corpora    map[string]*corpus
)

// benchCorpora returns the generated corpora: ~8 MB of Metadata events and
// ~8 MB of mixed levels (with large request/response objects).
func benchCorpora() map[string]*corpus {
	corpusOnce.Do(func() {
		ts := time.Date(2026, 11, 20, 8, 15, 0, 0, time.UTC)
		mk := func(next func(*auditgen.Generator, []byte) []byte) *corpus {
			g := auditgen.New(7)
			c := &corpus{}
			for c.bytes < 8<<20 {
				l := next(g, nil)
				c.lines = append(c.lines, l)
				c.bytes += len(l)
			}
			return c
		}
		corpora = map[string]*corpus{
			"Metadata": mk(func(g *auditgen.Generator, d []byte) []byte { return g.Append(d, auditgen.Metadata, ts) }),
			"Mixed":    mk(func(g *auditgen.Generator, d []byte) []byte { return g.AppendMixed(d, ts) }),
		}
		// The 757 real 2017 (v1beta1) events of liggitt/audit2rbac.
		if data, err := os.ReadFile(realDir + "/liggitt__audit2rbac__testdata__demo.log"); err == nil {
			c := &corpus{}
			for _, l := range bytes.SplitAfter(data, []byte("\n")) {
				if len(l) > 1 {
					c.lines = append(c.lines, l)
					c.bytes += len(l)
				}
			}
			corpora["RealLiggitt"] = c
		}
	})
	return corpora
}

// runCorpus runs fn over the corpus lines, one line per b.N iteration, and
// reports bytes and ns per event.
func runCorpus(b *testing.B, name string, fn func(line []byte) error) {
	c := benchCorpora()[name]
	b.SetBytes(int64(c.bytes / len(c.lines)))
	b.ReportAllocs()
	b.ResetTimer()
	k := 0
	for i := 0; i < b.N; i++ {
		if err := fn(c.lines[k]); err != nil {
			b.Fatal(err)
		}
		k++
		if k == len(c.lines) {
			k = 0
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/event")
}

// The contenders: Scan and encoding/json. Each reads the fields Scan
// extracts (or the struct's). The comparison with json-iterator and
// fastjson, and the one table of them all (make bench-parser), is in the
// module parser/internal/compare, so that audittail does not depend on those
// libraries; keep the corpora of the two in step.
func contenders() []struct {
	name string
	fn   func() func([]byte) error
} {
	return []struct {
		name string
		fn   func() func([]byte) error
	}{
		{"Scan", func() func([]byte) error {
			var ev Event
			return func(l []byte) error { return Scan(l, &ev) }
		}},
		{"EncodingJSONFull", func() func([]byte) error {
			return func(l []byte) error { var ev fullEvent; return json.Unmarshal(l, &ev) }
		}},
		{"EncodingJSONSlim", func() func([]byte) error {
			return func(l []byte) error { var ev slimEvent; return json.Unmarshal(l, &ev) }
		}},
		{"JSONValid", func() func([]byte) error {
			return func(l []byte) error {
				if !json.Valid(l) {
					return fmt.Errorf("invalid")
				}
				return nil
			}
		}},
	}
}

func benchAll(b *testing.B, corpusName string) {
	for _, c := range contenders() {
		b.Run(c.name, func(b *testing.B) { runCorpus(b, corpusName, c.fn()) })
	}
}

func BenchmarkScanMetadata(b *testing.B) { benchAll(b, "Metadata") }
func BenchmarkScanMixed(b *testing.B)    { benchAll(b, "Mixed") }
func BenchmarkScanReal(b *testing.B)     { benchAll(b, "RealLiggitt") }

func BenchmarkAppendMsgpack(b *testing.B) {
	for _, name := range []string{"Metadata", "Mixed"} {
		b.Run(name, func(b *testing.B) {
			buf := make([]byte, 0, 1<<20)
			runCorpus(b, name, func(l []byte) error {
				var err error
				buf, err = AppendMsgpack(buf[:0], l)
				return err
			})
		})
		// The obvious alternative: encoding/json into any, then
		// vmihailenco/msgpack.
		b.Run(name+"ViaEncodingJSON", func(b *testing.B) {
			runCorpus(b, name, func(l []byte) error {
				var v any
				if err := json.Unmarshal(l, &v); err != nil {
					return err
				}
				_, err := msgpack.Marshal(v)
				return err
			})
		})
	}
}

func BenchmarkSplitEventList(b *testing.B) {
	c := benchCorpora()["Metadata"]
	body := []byte(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[`)
	for k := 0; k < 100; k++ {
		if k > 0 {
			body = append(body, ',')
		}
		body = append(body, c.lines[k][:len(c.lines[k])-1]...)
	}
	body = append(body, "]}"...)
	fn := func([]byte) error { return nil }
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := SplitEventList(body, fn); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUnquote(b *testing.B) {
	raw := []byte(`RBAC: allowed by ClusterRoleBinding \"system:endpointslices\" of ClusterRole \"system:endpointslices\" to User \"system:serviceaccount:kube-system:coredns\"`)
	buf := make([]byte, 0, 256)
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		buf, _ = Unquote(buf[:0], raw)
	}
}
