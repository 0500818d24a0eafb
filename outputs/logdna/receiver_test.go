package logdna

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"
)

// wireLine is one element of "lines", decoded with encoding/json,
// independently of the encoder under test.
type wireLine struct {
	Timestamp int64          `json:"timestamp"`
	Line      string         `json:"line"`
	App       string         `json:"app"`
	Level     string         `json:"level"`
	Meta      map[string]any `json:"meta"`
}

// request is what the receiver saw of one POST.
type request struct {
	Method, Path, UserAgent, ContentType, ContentEncoding string
	Query                                                 map[string][]string
	User, Password                                        string
	AuthOK                                                bool
	BodyBytes                                             int // uncompressed
	Lines                                                 []wireLine
	Received                                              time.Time
}

// answer scripts the receiver's reply to one request.
type answer struct {
	code   int
	body   string
	header map[string]string
	// status, for 207, gives each line's code (and builds the body).
	status func(i int, l wireLine) int
	delay  time.Duration
}

// receiver is an in-process LogDNA ingest endpoint that checks the
// documented request shape and records what it accepted.
type receiver struct {
	t   *testing.T
	srv *httptest.Server
	key string

	mu       sync.Mutex
	script   []answer
	requests []request
	ids      []string // auditIDs accepted, in arrival order
	lines    []wireLine
}

func newReceiver(t *testing.T, key string) *receiver {
	r := &receiver{t: t, key: key}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) url() string { return r.srv.URL + "/logs/ingest" }

// then queues answers for the next requests; later requests get 200.
func (r *receiver) then(a ...answer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.script = append(r.script, a...)
}

func (r *receiver) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.script, r.requests, r.ids, r.lines = nil, nil, nil, nil
}

func (r *receiver) received() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.ids...)
}

func (r *receiver) got() []request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]request(nil), r.requests...)
}

func (r *receiver) accepted() []wireLine {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]wireLine(nil), r.lines...)
}

func (r *receiver) serve(w http.ResponseWriter, hr *http.Request) {
	req := request{
		Method: hr.Method, Path: hr.URL.Path, Query: hr.URL.Query(),
		UserAgent: hr.UserAgent(), ContentType: hr.Header.Get("Content-Type"),
		ContentEncoding: hr.Header.Get("Content-Encoding"), Received: time.Now(),
	}
	req.User, req.Password, req.AuthOK = hr.BasicAuth()
	var body io.Reader = hr.Body
	if req.ContentEncoding == "gzip" {
		zr, err := gzip.NewReader(hr.Body)
		if err != nil {
			r.t.Errorf("receiver: Content-Encoding gzip but not gzip: %v", err)
			http.Error(w, "bad gzip", 400)
			return
		}
		body = zr
	}
	raw, err := io.ReadAll(body)
	if err != nil {
		r.t.Errorf("receiver: reading body: %v", err)
		http.Error(w, "bad body", 400)
		return
	}
	req.BodyBytes = len(raw)
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var doc struct {
		Lines []wireLine `json:"lines"`
	}
	if err := dec.Decode(&doc); err != nil {
		r.t.Errorf("receiver: body is not {\"lines\":[…]}: %v", err)
		http.Error(w, "bad json", 400)
		return
	}
	req.Lines = doc.Lines

	r.mu.Lock()
	r.requests = append(r.requests, req)
	a := answer{code: 200, body: `{"status":"ok","batchID":"x"}`}
	if len(r.script) > 0 {
		a, r.script = r.script[0], r.script[1:]
	}
	if req.User != r.key || req.Password != "" {
		a = answer{code: 401, body: `{"error":"Unauthorized: invalid ingestion key","code":"NotAuthorized","status":"error"}`}
	}
	accept := func(l wireLine) {
		r.lines = append(r.lines, l)
		var ev struct {
			AuditID string `json:"auditID"`
		}
		if json.Unmarshal([]byte(l.Line), &ev) == nil {
			r.ids = append(r.ids, ev.AuditID)
		}
	}
	switch {
	case a.status != nil:
		codes := make([]int, len(doc.Lines))
		for i, l := range doc.Lines {
			codes[i] = a.status(i, l)
			if codes[i] >= 200 && codes[i] < 300 {
				accept(l)
			}
		}
		b, _ := json.Marshal(map[string]any{"status": codes})
		a.code, a.body = 207, string(b)
	case a.code >= 200 && a.code < 300 && a.code != 207:
		for _, l := range doc.Lines {
			accept(l)
		}
	}
	r.mu.Unlock()

	if a.delay > 0 {
		select {
		case <-time.After(a.delay):
		case <-hr.Context().Done():
		}
	}
	for k, v := range a.header {
		w.Header().Set(k, v)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(a.code)
	io.WriteString(w, a.body)
}

// codes returns n answers with the given status.
func codes(code int, n int) []answer {
	a := make([]answer, n)
	for i := range a {
		a[i] = answer{code: code, body: `{"error":"scripted ` + strconv.Itoa(code) + `"}`}
	}
	return a
}

func (r *receiver) String() string { return fmt.Sprintf("receiver at %s", r.srv.URL) }
