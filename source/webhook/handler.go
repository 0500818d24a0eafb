package webhook

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/audittail/audittail/parser"
)

// HandlerConfig configures a Handler.
type HandlerConfig struct {
	// Path is the URL path it answers (others get 404).
	Path string
	// Token, if not empty, must be sent as "Authorization: Bearer Token".
	Token []byte
	// ClientCert requires a client certificate the TLS server verified
	// (its ClientAuth is VerifyClientCertIfGiven, so that a request
	// without one gets a 401 saying so rather than a failed handshake).
	ClientCert bool
	// MaxBodyBytes refuses larger bodies (413).
	MaxBodyBytes int64
	// RetryAfter is the Retry-After (seconds) of a 429 or 503.
	RetryAfter int
	Log        *slog.Logger
}

// Codes are the status codes a Handler answers, in the order its checks
// run; Requests counts each.
var Codes = [...]int{
	http.StatusNotFound, http.StatusMethodNotAllowed, http.StatusUnauthorized,
	http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType,
	http.StatusTooManyRequests, http.StatusServiceUnavailable, http.StatusBadRequest,
	http.StatusInternalServerError, http.StatusOK,
}

// HandlerStats are the handler's counters.
type HandlerStats struct {
	requests [len(Codes)]atomic.Int64
	Events   atomic.Int64 // events spooled and acknowledged
	Bytes    atomic.Int64 // their bytes, as spooled
}

// Requests returns the requests answered with code.
func (s *HandlerStats) Requests(code int) int64 {
	for i, c := range Codes {
		if c == code {
			return s.requests[i].Load()
		}
	}
	return 0
}

func (s *HandlerStats) count(code int) {
	for i, c := range Codes {
		if c == code {
			s.requests[i].Add(1)
			return
		}
	}
}

// Handler receives kube-apiserver's audit webhook: it validates a body
// whole, appends its events to the spool and answers 200 once they are
// fsynced.
type Handler struct {
	cfg     HandlerConfig
	spool   *Spool
	closing atomic.Bool
	Stats   HandlerStats
	bufs    sync.Pool
}

// NewHandler returns a handler appending to spool.
func NewHandler(cfg HandlerConfig, spool *Spool) *Handler {
	if cfg.Path == "" {
		cfg.Path = "/"
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = 12 << 20
	}
	if cfg.RetryAfter == 0 {
		cfg.RetryAfter = 5
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Handler{cfg: cfg, spool: spool}
}

// Close makes every further request a 503 (shutting down).
func (h *Handler) Close() { h.closing.Store(true) }

func (h *Handler) answer(w http.ResponseWriter, code int, msg string) {
	h.Stats.count(code)
	if code == http.StatusOK {
		w.WriteHeader(code)
		return
	}
	switch code {
	case http.StatusTooManyRequests, http.StatusServiceUnavailable, http.StatusInternalServerError:
		w.Header().Set("Retry-After", strconv.Itoa(h.cfg.RetryAfter))
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	fmt.Fprintln(w, msg)
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != h.cfg.Path {
		h.answer(w, http.StatusNotFound, "audittail: no webhook at "+strconv.Quote(r.URL.Path)+"; this one is at "+strconv.Quote(h.cfg.Path))
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		h.answer(w, http.StatusMethodNotAllowed, "audittail: method "+r.Method+" not allowed: POST an audit.k8s.io EventList")
		return
	}
	if msg := h.authenticate(r); msg != "" {
		if len(h.cfg.Token) > 0 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="audittail"`)
		}
		h.answer(w, http.StatusUnauthorized, "audittail: "+msg)
		return
	}
	if r.ContentLength > h.cfg.MaxBodyBytes {
		h.answer(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("audittail: body of %d bytes is over max_body_bytes (%d)", r.ContentLength, h.cfg.MaxBodyBytes))
		return
	}
	if ct := r.Header.Get("Content-Type"); !isJSON(ct) {
		h.answer(w, http.StatusUnsupportedMediaType, fmt.Sprintf("audittail: content type %q is not application/json", ct))
		return
	}
	if !h.spool.WouldFit(r.ContentLength) {
		h.spool.Stats.Full.Add(1)
		h.answer(w, http.StatusTooManyRequests, "audittail: the spool is full (outputs are down or slow); retry later")
		return
	}
	if h.closing.Load() {
		h.answer(w, http.StatusServiceUnavailable, "audittail: shutting down; retry later")
		return
	}

	body, err := h.read(r)
	defer h.putBuf(body)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			h.answer(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("audittail: body is over max_body_bytes (%d)", h.cfg.MaxBodyBytes))
			return
		}
		h.answer(w, http.StatusBadRequest, "audittail: cannot read the body: "+err.Error())
		return
	}
	lines := h.getBuf(len(body.Bytes()) + len(body.Bytes())/8 + 64)
	defer h.putBuf(lines)
	n, err := Lines(lines, body.Bytes())
	if err != nil {
		h.answer(w, http.StatusBadRequest, "audittail: "+err.Error()+"; nothing of this request was kept")
		return
	}
	switch err := h.spool.Append(lines.Bytes()); {
	case err == nil:
	case errors.Is(err, ErrFull):
		h.answer(w, http.StatusTooManyRequests, "audittail: the spool is full (outputs are down or slow); retry later")
		return
	case errors.Is(err, ErrClosed):
		h.answer(w, http.StatusServiceUnavailable, "audittail: shutting down; retry later")
		return
	default:
		h.cfg.Log.Error("cannot spool a webhook request; answering 500 (kube-apiserver retries)", "error", err)
		h.answer(w, http.StatusInternalServerError, "audittail: cannot write the spool; retry later")
		return
	}
	h.Stats.Events.Add(int64(n))
	h.Stats.Bytes.Add(int64(lines.Len()))
	h.answer(w, http.StatusOK, "")
}

// authenticate returns why r is refused, or "".
func (h *Handler) authenticate(r *http.Request) string {
	var msgs []string
	if h.cfg.ClientCert && (r.TLS == nil || len(r.TLS.VerifiedChains) == 0) {
		msgs = append(msgs, "a client certificate signed by tls.client_ca_file is required")
	}
	if len(h.cfg.Token) > 0 {
		got, ok := bytes.CutPrefix([]byte(r.Header.Get("Authorization")), []byte("Bearer "))
		switch {
		case !ok:
			msgs = append(msgs, "a bearer token is required")
		case subtle.ConstantTimeCompare(bytes.TrimSpace(got), h.cfg.Token) != 1:
			msgs = append(msgs, "the bearer token is wrong")
		}
	}
	switch len(msgs) {
	case 0:
		return ""
	case 1:
		return msgs[0]
	}
	return msgs[0] + ", and " + msgs[1]
}

func isJSON(ct string) bool {
	if ct == "" {
		return true // curl --data-binary @file without -H; kube-apiserver always sends one
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	return mt == "application/json" || (len(mt) > 5 && mt[len(mt)-5:] == "+json")
}

func (h *Handler) read(r *http.Request) (*bytes.Buffer, error) {
	size := 64 << 10
	if r.ContentLength > 0 {
		size = int(r.ContentLength) + 1
	}
	b := h.getBuf(size)
	_, err := b.ReadFrom(http.MaxBytesReader(nil, r.Body, h.cfg.MaxBodyBytes))
	return b, err
}

func (h *Handler) getBuf(n int) *bytes.Buffer {
	b, _ := h.bufs.Get().(*bytes.Buffer)
	if b == nil {
		b = new(bytes.Buffer)
	}
	b.Reset()
	b.Grow(n)
	return b
}

func (h *Handler) putBuf(b *bytes.Buffer) {
	if b != nil && b.Cap() <= 16<<20 {
		h.bufs.Put(b)
	}
}

// Lines validates body, an audit.k8s.io/v1 or v1beta1 EventList (or a
// single Event), and writes its events to out as JSON lines, returning
// how many. Nothing is written unless every item is a valid audit event.
// An item is written as sent, compacted if it spans lines; the list's
// kind and apiVersion, which kube-apiserver leaves out of its items, are
// put in front, so that a spooled line is what the log backend writes.
func Lines(out *bytes.Buffer, body []byte) (int, error) {
	mark := out.Len()
	n := 0
	single := false
	var version []byte
	var ev parser.Event
	_, err := parser.SplitEventListHeader(body, func(h parser.EventListHeader) error {
		version = h.APIVersion
		switch v := string(h.APIVersion); {
		case h.Kind == nil:
			return &requestError{`the body has no "kind": want an audit.k8s.io EventList or Event`}
		case string(h.Kind) != "EventList" && string(h.Kind) != "Event":
			return &requestError{fmt.Sprintf(`the body's kind is %q: want an audit.k8s.io EventList or Event`, h.Kind)}
		case v != "audit.k8s.io/v1" && v != "audit.k8s.io/v1beta1":
			return &requestError{fmt.Sprintf(`the body's apiVersion is %q: want audit.k8s.io/v1 or audit.k8s.io/v1beta1`, v)}
		case string(h.Kind) == "Event":
			single = true
			return errSingle
		}
		return nil
	}, func(item []byte) error {
		if err := parser.Scan(item, &ev); err != nil {
			return &requestError{fmt.Sprintf("items[%d] (at byte %d): %v", n, offsetIn(body, item), err)}
		}
		if err := ev.CheckItem(); err != nil {
			return &requestError{fmt.Sprintf("items[%d] (at byte %d): %v", n, offsetIn(body, item), err)}
		}
		var kind, apiVersion []byte
		if ev.Kind == nil {
			kind = []byte("Event")
		}
		if ev.APIVersion == nil {
			apiVersion = version
		}
		writeLine(out, item, kind, apiVersion)
		n++
		return nil
	})
	var re *requestError
	switch {
	case single:
		if err := parser.Scan(body, &ev); err != nil {
			return 0, fmt.Errorf("the body is not a JSON object: %w", err)
		}
		if err := ev.Check(); err != nil {
			return 0, err
		}
		writeLine(out, bytes.TrimSpace(body), nil, nil)
		return 1, nil
	case errors.As(err, &re):
		out.Truncate(mark)
		return 0, errors.New(re.msg)
	case err != nil:
		out.Truncate(mark)
		return 0, fmt.Errorf("the body is not a JSON object: %w", err)
	}
	if n == 0 {
		// No items: make sure they are not under a key spelled otherwise
		// (Go's encoding/json would take "Items"; keys are case-sensitive
		// here, and an event must not be acknowledged unread).
		var keys map[string]json.RawMessage
		if err := json.Unmarshal(body, &keys); err == nil {
			for k := range keys {
				if k != "items" && strings.EqualFold(k, "items") {
					return 0, fmt.Errorf(`the EventList has %q, not "items" (keys are case-sensitive)`, k)
				}
			}
		}
	}
	return n, nil
}

// requestError is what is wrong with a request body.
type requestError struct{ msg string }

func (e *requestError) Error() string { return e.msg }

// errSingle stops the walk of a body that is a single Event.
var errSingle = errors.New("a single event")

// offsetIn returns where item, a sub-slice of body, starts in it.
func offsetIn(body, item []byte) int { return cap(body) - cap(item) }

// writeLine writes the JSON object obj as one line, with "kind" and
// "apiVersion" members in front when given.
func writeLine(out *bytes.Buffer, obj, kind, apiVersion []byte) {
	if bytes.IndexByte(obj, '\n') >= 0 {
		// Pretty-printed: a line must hold one event.
		var c bytes.Buffer
		if err := json.Compact(&c, obj); err != nil {
			panic("webhook: compacting a validated item: " + err.Error())
		}
		obj = c.Bytes()
	}
	if kind != nil || apiVersion != nil {
		out.WriteByte('{')
		if kind != nil {
			out.WriteString(`"kind":"`)
			out.Write(kind)
			out.WriteString(`",`)
		}
		if apiVersion != nil {
			out.WriteString(`"apiVersion":"`)
			out.Write(apiVersion)
			out.WriteString(`",`)
		}
		obj = obj[1:] // at least one member follows: an item has an auditID
	}
	out.Write(obj)
	out.WriteByte('\n')
}
