package ibmcloudlogs

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// wireEntry is one element of the singles array, decoded with
// encoding/json, independently of the encoder under test.
type wireEntry struct {
	ApplicationName string  `json:"applicationName"`
	SubsystemName   string  `json:"subsystemName"`
	ComputerName    string  `json:"computerName"`
	Severity        int     `json:"severity"`
	Timestamp       float64 `json:"timestamp"`
	Text            string  `json:"text"`
}

// request is what the ingestion endpoint saw of one POST.
type request struct {
	Method, Path, UserAgent, ContentType string
	Token                                string
	BodyBytes                            int
	Entries                              []wireEntry
}

// answer scripts the ingestion endpoint's reply to one request.
type answer struct {
	code   int
	body   string
	header map[string]string
	delay  time.Duration
}

// receiver is an in-process IBM Cloud Logs instance: the IAM token
// endpoint and the singles ingestion endpoint, as documented. It checks
// the request shapes and records what it accepted.
type receiver struct {
	t   *testing.T
	srv *httptest.Server

	mu        sync.Mutex
	apiKey    string        // the key IAM accepts
	tokenTTL  time.Duration // expires_in of the tokens issued
	tokens    map[string]time.Time
	issued    int // tokens issued
	refused   int // ingestion requests answered 401
	iamCalls  int // token requests, refused ones included
	iamScript []answer
	script    []answer
	requests  []request
	ids       []string // auditIDs accepted, in arrival order
	entries   []wireEntry
	keys      map[string]int // auditID/stage -> times accepted
	light     bool           // keep only keys (the end-to-end test's 100,000 events)
}

func newReceiver(t *testing.T, apiKey string) *receiver {
	r := &receiver{t: t, apiKey: apiKey, tokenTTL: time.Hour, tokens: map[string]time.Time{}, keys: map[string]int{}}
	r.srv = httptest.NewServer(r.mux())
	t.Cleanup(r.srv.Close)
	return r
}

// newTLSReceiver is newReceiver over https:// with httptest's certificate
// (for 127.0.0.1 and example.com).
func newTLSReceiver(t *testing.T, apiKey string) *receiver {
	r := &receiver{t: t, apiKey: apiKey, tokenTTL: time.Hour, tokens: map[string]time.Time{}, keys: map[string]int{}}
	r.srv = httptest.NewUnstartedServer(r.mux())
	r.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	r.srv.StartTLS()
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) mux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/identity/token", r.serveIAM)
	mux.HandleFunc("/logs/v1/singles", r.serveSingles)
	return mux
}

func (r *receiver) endpoint() string    { return r.srv.URL }
func (r *receiver) iamEndpoint() string { return r.srv.URL + "/identity/token" }
func (r *receiver) host() string        { return r.srv.Listener.Addr().String() }

// then queues answers for the next ingestion requests that carry a valid
// token; later requests get 200.
func (r *receiver) then(a ...answer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.script = append(r.script, a...)
}

// thenIAM queues answers for the next token requests.
func (r *receiver) thenIAM(a ...answer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.iamScript = append(r.iamScript, a...)
}

func (r *receiver) setTTL(d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tokenTTL = d
}

func (r *receiver) setKey(k string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.apiKey = k
}

// revoke makes every token issued so far invalid.
func (r *receiver) revoke() {
	r.mu.Lock()
	defer r.mu.Unlock()
	clear(r.tokens)
}

func (r *receiver) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.script, r.iamScript, r.requests, r.ids, r.entries = nil, nil, nil, nil, nil
	r.keys = map[string]int{}
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

func (r *receiver) accepted() []wireEntry {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]wireEntry(nil), r.entries...)
}

// counts returns the token requests seen and the tokens issued.
func (r *receiver) counts() (calls, issued int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.iamCalls, r.issued
}

// unauthorized returns how many ingestion requests were answered 401.
func (r *receiver) unauthorized() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.refused
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func iamError(w http.ResponseWriter, code int, errCode, msg string) {
	writeJSON(w, code, map[string]any{
		"errorCode": errCode, "errorMessage": msg,
		"context": map[string]any{"requestId": "test"},
	})
}

// serveIAM is IBM Cloud IAM's POST /identity/token for the apikey grant.
func (r *receiver) serveIAM(w http.ResponseWriter, hr *http.Request) {
	r.mu.Lock()
	r.iamCalls++
	var scripted *answer
	if len(r.iamScript) > 0 {
		a := r.iamScript[0]
		r.iamScript = r.iamScript[1:]
		scripted = &a
	}
	key, ttl := r.apiKey, r.tokenTTL
	r.mu.Unlock()

	if hr.Method != http.MethodPost {
		iamError(w, 405, "BXNIM0100E", "method not allowed")
		return
	}
	if ct := hr.Header.Get("Content-Type"); ct != "application/x-www-form-urlencoded" {
		r.t.Errorf("IAM: Content-Type %q, want application/x-www-form-urlencoded", ct)
	}
	if a := hr.Header.Get("Accept"); a != "application/json" {
		r.t.Errorf("IAM: Accept %q, want application/json", a)
	}
	if err := hr.ParseForm(); err != nil {
		iamError(w, 400, "BXNIM0109E", "cannot parse the form")
		return
	}
	if scripted != nil {
		for k, v := range scripted.header {
			w.Header().Set(k, v)
		}
		w.WriteHeader(scripted.code)
		io.WriteString(w, scripted.body)
		return
	}
	if g := hr.PostForm.Get("grant_type"); g != "urn:ibm:params:oauth:grant-type:apikey" {
		iamError(w, 400, "BXNIM0103E", "Unsupported grant type "+g)
		return
	}
	k := hr.PostForm.Get("apikey")
	if k == "" {
		iamError(w, 400, "BXNIM0111E", "Property missing or empty. Property name(s): 'apikey'")
		return
	}
	if k != key {
		iamError(w, 400, "BXNIM0415E", "Provided API key could not be found.")
		return
	}
	r.mu.Lock()
	r.issued++
	tok := "tok-" + strconv.Itoa(r.issued)
	now := time.Now()
	r.tokens[tok] = now.Add(ttl)
	r.mu.Unlock()
	secs := int64(ttl / time.Second)
	writeJSON(w, 200, map[string]any{
		"access_token":  tok,
		"refresh_token": "not_supported",
		"token_type":    "Bearer",
		"expires_in":    secs,
		"expiration":    now.Add(ttl).Unix(),
		"scope":         "ibm openid",
	})
}

// serveSingles is IBM Cloud Logs' POST /logs/v1/singles.
func (r *receiver) serveSingles(w http.ResponseWriter, hr *http.Request) {
	req := request{Method: hr.Method, Path: hr.URL.Path, UserAgent: hr.UserAgent(), ContentType: hr.Header.Get("Content-Type")}
	if hr.Method != http.MethodPost {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	tok, ok := strings.CutPrefix(hr.Header.Get("Authorization"), "Bearer ")
	r.mu.Lock()
	exp, known := r.tokens[tok]
	r.mu.Unlock()
	if !ok || !known || time.Now().After(exp) {
		r.mu.Lock()
		r.refused++
		r.mu.Unlock()
		http.Error(w, `{"error":"unauthorized"}`, http.StatusUnauthorized)
		return
	}
	req.Token = tok
	if req.ContentType != "application/json" {
		r.t.Errorf("singles: Content-Type %q, want application/json", req.ContentType)
	}
	raw, err := io.ReadAll(hr.Body)
	if err != nil {
		http.Error(w, "bad body", 400)
		return
	}
	req.BodyBytes = len(raw)
	entries, err := decodeSingles(raw)
	if err != nil {
		r.t.Errorf("singles: %v", err)
		http.Error(w, err.Error(), 400)
		return
	}
	req.Entries = entries

	r.mu.Lock()
	if !r.light {
		r.requests = append(r.requests, req)
	}
	a := answer{code: 200, body: `{}`}
	if len(r.script) > 0 {
		a, r.script = r.script[0], r.script[1:]
	}
	if a.code >= 200 && a.code <= 299 {
		for _, e := range entries {
			var ev struct {
				AuditID string `json:"auditID"`
				Stage   string `json:"stage"`
			}
			json.Unmarshal([]byte(e.Text), &ev)
			r.keys[ev.AuditID+"/"+ev.Stage]++
			if !r.light {
				r.entries = append(r.entries, e)
				r.ids = append(r.ids, ev.AuditID)
			}
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

// decodeSingles decodes a singles body strictly: an array of objects with
// exactly the documented fields, of the documented types.
func decodeSingles(raw []byte) ([]wireEntry, error) {
	var items []map[string]json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, fmt.Errorf("body is not a JSON array of objects: %v", err)
	}
	if items == nil {
		return nil, fmt.Errorf("body is null, want an array")
	}
	out := make([]wireEntry, 0, len(items))
	for i, it := range items {
		var e wireEntry
		for k, v := range it {
			var err error
			switch k {
			case "applicationName":
				err = decodeString(v, &e.ApplicationName)
			case "subsystemName":
				err = decodeString(v, &e.SubsystemName)
			case "computerName":
				err = decodeString(v, &e.ComputerName)
			case "text":
				err = decodeString(v, &e.Text)
				if err == nil && !json.Valid([]byte(e.Text)) {
					err = fmt.Errorf("does not hold JSON: %.80q", e.Text)
				}
			case "severity":
				var n json.Number
				d := json.NewDecoder(bytes.NewReader(v))
				d.UseNumber()
				if err = d.Decode(&n); err == nil {
					var s int64
					s, err = n.Int64()
					if err == nil && (s < 1 || s > 6) {
						err = fmt.Errorf("%d is not a severity (1 to 6)", s)
					}
					e.Severity = int(s)
				}
			case "timestamp":
				err = json.Unmarshal(v, &e.Timestamp)
			default:
				err = fmt.Errorf("unknown field")
			}
			if err != nil {
				return nil, fmt.Errorf("entry %d: %s: %v", i, k, err)
			}
		}
		for _, k := range []string{"applicationName", "subsystemName", "severity", "text", "timestamp", "computerName"} {
			if _, ok := it[k]; !ok {
				return nil, fmt.Errorf("entry %d: %s missing", i, k)
			}
		}
		out = append(out, e)
	}
	return out, nil
}

func decodeString(v json.RawMessage, dst *string) error {
	if len(v) == 0 || v[0] != '"' {
		return fmt.Errorf("not a string: %.40s", v)
	}
	return json.Unmarshal(v, dst)
}

// codes returns n answers with the given status.
func codes(code int, n int) []answer {
	a := make([]answer, n)
	for i := range a {
		a[i] = answer{code: code, body: `{"error":"scripted ` + strconv.Itoa(code) + `"}`}
	}
	return a
}
