package otlptest

import (
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"go.opentelemetry.io/collector/pdata/plog/plogotlp"

	"github.com/audittail/audittail/internal/e2etest"
)

// keys counts auditID+stage pairs received, decoding with pdata and
// reading each event from the record's body.
type keys struct {
	mu  sync.Mutex
	got map[string]int
	bad error
}

func (k *keys) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	var body io.Reader = req.Body
	if req.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(req.Body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		body = zr
	}
	data, _ := io.ReadAll(body)
	er := plogotlp.NewExportRequest()
	if err := er.UnmarshalProto(data); err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	rls := er.Logs().ResourceLogs()
	for i := range rls.Len() {
		sls := rls.At(i).ScopeLogs()
		for j := range sls.Len() {
			recs := sls.At(j).LogRecords()
			for r := range recs.Len() {
				var ev struct{ AuditID, Stage string }
				if err := json.Unmarshal([]byte(recs.At(r).Body().Str()), &ev); err != nil && k.bad == nil {
					k.bad = fmt.Errorf("a record body that is not the event: %v", err)
				}
				k.got[ev.AuditID+"/"+ev.Stage]++
			}
		}
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
}

func (k *keys) snapshot() map[string]int {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make(map[string]int, len(k.got))
	for id, n := range k.got {
		out[id] = n
	}
	return out
}

func TestEndToEndThroughTheBinaryWithAKillMidRun(t *testing.T) {
	rcv := &keys{got: map[string]int{}}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	e2etest.KillMidRun(t, fmt.Sprintf("  - type: otlp\n    endpoint: %s\n    node_name: e2e\n", srv.URL), func() map[string]int {
		rcv.mu.Lock()
		bad := rcv.bad
		rcv.mu.Unlock()
		if bad != nil {
			t.Fatal(bad)
		}
		return rcv.snapshot()
	})
}
