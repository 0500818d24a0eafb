// Package compare benchmarks parser.Scan against encoding/json and the two
// JSON libraries it was chosen over, json-iterator and fastjson, on the same
// corpora (docs/decisions/0002-parser.md). `make bench-parser` prints one
// table of them all:
//
//	cd parser/internal/compare && AUDITTAIL_BENCH_TABLE=1 go test -run '^TestPrintBenchTable$' -count=1
//
// and `go test -bench . ./...` here runs them as ordinary benchmarks. It is
// a module of its own so that audittail does not depend on those libraries;
// parser/bench_test.go keeps the comparison with encoding/json alone, on the
// same corpora.
package compare

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"sync"
	"testing"
	"time"

	jsoniter "github.com/json-iterator/go"
	"github.com/valyala/fastjson"

	"github.com/audittail/audittail/parser"
	"github.com/audittail/audittail/parser/auditgen"
)

// realDir holds the real audit events, at the repository root.
const realDir = "../../../testdata/real"

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

// Corpus is a set of event lines, each ending in a newline.
type Corpus struct {
	Lines [][]byte
	Bytes int
}

// CorpusNames are the corpora, in the table's order.
var CorpusNames = []string{"Metadata", "Mixed", "RealLiggitt"}

var (
	corpusOnce sync.Once
	corpora    map[string]*Corpus
	corpusErr  error
)

// Corpora returns the corpora: ~8 MB of generated Metadata events, ~8 MB of
// mixed levels (with large request/response objects), and the 757 real
// 2017 (v1beta1) events of liggitt/audit2rbac. They are the corpora of
// parser/bench_test.go: same seed, timestamp and size.
func Corpora() (map[string]*Corpus, error) {
	corpusOnce.Do(func() {
		ts := time.Date(2026, 11, 20, 8, 15, 0, 0, time.UTC)
		mk := func(next func(*auditgen.Generator, []byte) []byte) *Corpus {
			g := auditgen.New(7)
			c := &Corpus{}
			for c.Bytes < 8<<20 {
				l := next(g, nil)
				c.Lines = append(c.Lines, l)
				c.Bytes += len(l)
			}
			return c
		}
		corpora = map[string]*Corpus{
			"Metadata": mk(func(g *auditgen.Generator, d []byte) []byte { return g.Append(d, auditgen.Metadata, ts) }),
			"Mixed":    mk(func(g *auditgen.Generator, d []byte) []byte { return g.AppendMixed(d, ts) }),
		}
		data, err := os.ReadFile(realDir + "/liggitt__audit2rbac__testdata__demo.log")
		if err != nil {
			corpusErr = err
			return
		}
		c := &Corpus{}
		for _, l := range bytes.SplitAfter(data, []byte("\n")) {
			if len(l) > 1 {
				c.Lines = append(c.Lines, l)
				c.Bytes += len(l)
			}
		}
		corpora["RealLiggitt"] = c
	})
	return corpora, corpusErr
}

// RunCorpus runs fn over the corpus lines, one line per b.N iteration, and
// reports bytes and ns per event.
func RunCorpus(b *testing.B, c *Corpus, fn func(line []byte) error) {
	b.SetBytes(int64(c.Bytes / len(c.Lines)))
	b.ReportAllocs()
	b.ResetTimer()
	k := 0
	for i := 0; i < b.N; i++ {
		if err := fn(c.Lines[k]); err != nil {
			b.Fatal(err)
		}
		k++
		if k == len(c.Lines) {
			k = 0
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/event")
}

// Contender is one parser: New returns a function that parses a line, with
// whatever state the parser reuses between lines.
type Contender struct {
	Name string
	New  func() func([]byte) error
}

// Contenders returns the parsers compared, Scan first. Each reads the
// fields Scan extracts (or the struct's).
func Contenders() []Contender {
	return []Contender{
		{"Scan", func() func([]byte) error {
			var ev parser.Event
			return func(l []byte) error { return parser.Scan(l, &ev) }
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
					return errors.New("invalid")
				}
				return nil
			}
		}},
		{"JSONIterSlim", func() func([]byte) error {
			api := jsoniter.ConfigFastest
			return func(l []byte) error { var ev slimEvent; return api.Unmarshal(l, &ev) }
		}},
		{"JSONIterIterator", func() func([]byte) error {
			// jsoniter's streaming Iterator reading the slim struct's seven
			// fields and skipping the rest.
			api := jsoniter.ConfigFastest
			var sink int
			return func(l []byte) error {
				it := api.BorrowIterator(l)
				defer api.ReturnIterator(it)
				for k := it.ReadObject(); k != ""; k = it.ReadObject() {
					switch k {
					case "auditID", "stage", "verb", "requestURI":
						sink += len(it.ReadString())
					case "user", "objectRef":
						for k2 := it.ReadObject(); k2 != ""; k2 = it.ReadObject() {
							switch k2 {
							case "username", "resource", "namespace":
								sink += len(it.ReadString())
							default:
								it.Skip()
							}
						}
					default:
						it.Skip()
					}
				}
				return it.Error
			}
		}},
		{"FastJSON", func() func([]byte) error {
			var p fastjson.Parser
			var sink int
			return func(l []byte) error {
				v, err := p.ParseBytes(l)
				if err != nil {
					return err
				}
				for _, k := range [...]string{"kind", "apiVersion", "level", "auditID", "stage", "requestURI", "verb", "userAgent", "requestReceivedTimestamp", "stageTimestamp"} {
					sink += len(v.GetStringBytes(k))
				}
				sink += len(v.GetStringBytes("user", "username")) + len(v.GetStringBytes("impersonatedUser", "username"))
				for _, k := range [...]string{"resource", "namespace", "name", "apiGroup", "apiVersion", "subresource"} {
					sink += len(v.GetStringBytes("objectRef", k))
				}
				sink += v.GetInt("responseStatus", "code")
				for _, k := range [...]string{"sourceIPs", "annotations", "requestObject", "responseObject"} {
					if x := v.Get(k); x != nil {
						sink++
					}
				}
				if x := v.Get("user", "groups"); x != nil {
					sink++
				}
				return nil
			}
		}},
	}
}
