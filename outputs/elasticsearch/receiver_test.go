package elasticsearch

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// receiver implements the documented _bulk request and answer shapes
// (https://www.elastic.co/docs/api/doc/elasticsearch/operation/operation-bulk),
// decoding with encoding/json only: NDJSON pairs of an action line and a
// document, answered 200 with {"took","errors","items":[{"create":
// {"_index","_id","status","result"|"error"}}]}, 201 for a new _id and
// 409 version_conflict_engine_exception for one it holds. GET / answers
// as Elasticsearch 8 or OpenSearch 2 do.
type receiver struct {
	t      testing.TB
	flavor string // "es8", "os2" or "es6"

	mu       sync.Mutex
	docs     map[string]map[string]any // index -> _id -> document
	order    []string                  // auditIDs of created documents
	created  map[string]int            // auditID/stage (read from the document) -> documents created
	requests int
	bodies   []int // document count per bulk request
	// Scripted faults, consumed in order.
	whole []int                                // whole-request statuses to answer (0: none)
	items func(k int, id string) (int, string) // per-item status override (0: normal)
	bad   []error
	auth  string // the Authorization header required ("" none)
	// light decodes only @timestamp, auditID and stage, and keeps no
	// document (the end-to-end test's 100,000 events).
	light     bool
	conflicts int // items answered 409
	raw       []string
}

func newReceiver(t testing.TB, flavor string) (*receiver, *httptest.Server) {
	r := &receiver{t: t, flavor: flavor, docs: map[string]map[string]any{}, created: map[string]int{}}
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return r, srv
}

func (r *receiver) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.docs, r.order, r.requests, r.bodies = map[string]map[string]any{}, nil, 0, nil
	r.created = map[string]int{}
	r.whole, r.items, r.bad, r.raw = nil, nil, nil, nil
}

func (r *receiver) fail(err error) {
	r.bad = append(r.bad, err)
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.auth != "" && req.Header.Get("Authorization") != r.auth {
		w.Header().Set("WWW-Authenticate", `Basic realm="security"`)
		w.WriteHeader(401)
		fmt.Fprint(w, `{"error":{"type":"security_exception","reason":"unable to authenticate user"},"status":401}`)
		return
	}
	if req.Method == http.MethodGet && req.URL.Path == "/" {
		w.Header().Set("Content-Type", "application/json")
		switch r.flavor {
		case "os2":
			fmt.Fprint(w, `{"name":"os-0","cluster_name":"docker-cluster","cluster_uuid":"x","version":{"distribution":"opensearch","number":"2.17.1","build_type":"tar","minimum_wire_compatibility_version":"7.10.0","minimum_index_compatibility_version":"7.0.0"},"tagline":"The OpenSearch Project: https://opensearch.org/"}`)
		case "es6":
			fmt.Fprint(w, `{"name":"es-0","cluster_name":"docker-cluster","version":{"number":"6.8.23","build_flavor":"default"},"tagline":"You Know, for Search"}`)
		default:
			fmt.Fprint(w, `{"name":"es-0","cluster_name":"docker-cluster","cluster_uuid":"x","version":{"number":"8.15.3","build_flavor":"default","build_type":"docker","lucene_version":"9.11.1","minimum_wire_compatibility_version":"7.17.0","minimum_index_compatibility_version":"7.0.0"},"tagline":"You Know, for Search"}`)
		}
		return
	}
	index, ok := strings.CutSuffix(strings.TrimPrefix(req.URL.Path, "/"), "/_bulk")
	if req.Method != http.MethodPost || !ok || index == "" || strings.Contains(index, "/") {
		w.WriteHeader(404)
		fmt.Fprintf(w, `{"error":"no handler found for uri [%s] and method [%s]"}`, req.URL.Path, req.Method)
		return
	}
	r.requests++
	if len(r.whole) > 0 {
		code := r.whole[0]
		r.whole = r.whole[1:]
		if code != 0 {
			io.Copy(io.Discard, req.Body)
			w.WriteHeader(code)
			fmt.Fprintf(w, `{"error":{"type":"scripted","reason":"scripted %d"},"status":%d}`, code, code)
			return
		}
	}
	if ct := req.Header.Get("Content-Type"); ct != "application/x-ndjson" && ct != "application/json" {
		w.WriteHeader(406)
		fmt.Fprintf(w, `{"error":"Content-Type header [%s] is not supported","status":406}`, ct)
		return
	}
	var body io.Reader = req.Body
	if req.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(req.Body)
		if err != nil {
			w.WriteHeader(400)
			return
		}
		body = zr
	}
	data, err := io.ReadAll(body)
	if err != nil {
		w.WriteHeader(400)
		return
	}
	if len(data) == 0 || data[len(data)-1] != '\n' {
		w.WriteHeader(400)
		fmt.Fprint(w, `{"error":{"type":"illegal_argument_exception","reason":"The bulk request must be terminated by a newline [\\n]"},"status":400}`)
		return
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 200<<20)
	type itemAnswer struct {
		Index  string         `json:"_index"`
		ID     string         `json:"_id"`
		Status int            `json:"status"`
		Result string         `json:"result,omitempty"`
		Error  map[string]any `json:"error,omitempty"`
	}
	var items []map[string]itemAnswer
	errorsSeen := false
	for sc.Scan() {
		var action map[string]struct {
			ID    string `json:"_id"`
			Index string `json:"_index"`
		}
		if err := json.Unmarshal(sc.Bytes(), &action); err != nil || len(action) != 1 {
			w.WriteHeader(400)
			fmt.Fprintf(w, `{"error":{"type":"x_content_parse_exception","reason":%q},"status":400}`, fmt.Sprint("malformed action line: ", err))
			return
		}
		a, isCreate := action["create"]
		if !sc.Scan() {
			w.WriteHeader(400)
			fmt.Fprint(w, `{"error":{"type":"illegal_argument_exception","reason":"action line without a document"},"status":400}`)
			return
		}
		docLine := append([]byte(nil), sc.Bytes()...)
		k := len(items)
		ans := itemAnswer{Index: index, ID: a.ID}
		var doc map[string]any
		var decodeErr error
		if r.light {
			var l struct {
				Timestamp  *string `json:"@timestamp"`
				Kubernetes struct {
					Audit struct{ AuditID, Stage string }
				}
			}
			if decodeErr = json.Unmarshal(docLine, &l); decodeErr == nil {
				doc = map[string]any{"kubernetes": map[string]any{"audit": map[string]any{"auditID": l.Kubernetes.Audit.AuditID, "stage": l.Kubernetes.Audit.Stage}}}
				if l.Timestamp != nil {
					doc["@timestamp"] = *l.Timestamp
				}
			}
		} else {
			decodeErr = json.Unmarshal(docLine, &doc)
		}
		switch {
		case !isCreate:
			ans.Status, ans.Error = 400, map[string]any{"type": "illegal_argument_exception", "reason": "only write ops with an op_type of create are allowed in data streams"}
		case decodeErr != nil:
			ans.Status, ans.Error = 400, map[string]any{"type": "document_parsing_exception", "reason": "failed to parse"}
		case a.ID == "":
			ans.Status, ans.Error = 400, map[string]any{"type": "test_exception", "reason": "this receiver wants an _id"}
		}
		if ans.Status == 0 && r.items != nil {
			if code, reason := r.items(k, a.ID); code != 0 {
				ans.Status, ans.Error = code, map[string]any{"type": "scripted_exception", "reason": reason}
			}
		}
		if ans.Status == 0 {
			if _, ok := doc["@timestamp"]; !ok {
				ans.Status, ans.Error = 400, map[string]any{"type": "test_exception", "reason": "no @timestamp: a data stream refuses it"}
			}
		}
		if ans.Status == 0 {
			m := r.docs[index]
			if m == nil {
				m = map[string]any{}
				r.docs[index] = m
			}
			if _, dup := m[a.ID]; dup {
				r.conflicts++
				ans.Status, ans.Error = 409, map[string]any{"type": "version_conflict_engine_exception", "reason": "[" + a.ID + "]: version conflict, document already exists"}
			} else {
				ans.Status, ans.Result = 201, "created"
				if r.light {
					m[a.ID] = nil
				} else {
					m[a.ID] = doc
					r.raw = append(r.raw, string(docLine))
				}
				id, stage := "", ""
				if ka, ok := doc["kubernetes"].(map[string]any); ok {
					if au, ok := ka["audit"].(map[string]any); ok {
						id, _ = au["auditID"].(string)
						stage, _ = au["stage"].(string)
					}
				}
				r.order = append(r.order, id)
				r.created[id+"/"+stage]++
			}
		}
		if ans.Status != 201 {
			errorsSeen = true
		}
		items = append(items, map[string]itemAnswer{"create": ans})
	}
	if err := sc.Err(); err != nil {
		r.fail(err)
	}
	r.bodies = append(r.bodies, len(items))
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"took": 3, "errors": errorsSeen, "items": items})
}

func (r *receiver) received() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.order...)
}

// createdSnapshot returns auditID/stage -> documents created for it.
func (r *receiver) createdSnapshot() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]int, len(r.created))
	for k, n := range r.created {
		out[k] = n
	}
	return out
}

// doc returns the document whose _id starts with prefix (auditID-stage-),
// failing the test if several do.
func (r *receiver) doc(index, prefix string) map[string]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	var found map[string]any
	for id, d := range r.docs[index] {
		if strings.HasPrefix(id, prefix+"-") {
			if found != nil {
				r.t.Errorf("several documents with an _id starting %s-", prefix)
			}
			found, _ = d.(map[string]any)
		}
	}
	return found
}

// docWhere returns the one document of index that match says is it.
func (r *receiver) docWhere(index string, match func(audit map[string]any) bool) map[string]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	var found map[string]any
	for _, d := range r.docs[index] {
		m, _ := d.(map[string]any)
		k, _ := m["kubernetes"].(map[string]any)
		a, _ := k["audit"].(map[string]any)
		if a != nil && match(a) {
			if found != nil {
				r.t.Errorf("several documents match")
			}
			found = m
		}
	}
	return found
}

// ids returns every _id stored in index.
func (r *receiver) ids(index string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ids []string
	for id := range r.docs[index] {
		ids = append(ids, id)
	}
	return ids
}

func (r *receiver) count(index string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.docs[index])
}

func (r *receiver) script(whole ...int) {
	r.mu.Lock()
	r.whole = append(r.whole, whole...)
	r.mu.Unlock()
}

func (r *receiver) scriptItems(f func(k int, id string) (int, string)) {
	r.mu.Lock()
	r.items = f
	r.mu.Unlock()
}

func (r *receiver) errs() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.bad) > 0 {
		return r.bad[0]
	}
	return nil
}
