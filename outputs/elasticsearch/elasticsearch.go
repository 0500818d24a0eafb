// Package elasticsearch implements the `elasticsearch` output: audit events
// indexed with the _bulk API of Elasticsearch 7, 8 and 9 and OpenSearch 1
// and 2 alike (the request and answer shapes they share; no product check).
//
// Each batch becomes one request, or several when it would exceed
// max_request_bytes:
//
//	POST {url}/{index}/_bulk?filter_path=errors,items.*.status,items.*.error[&pipeline=…]
//	Authorization: Basic base64(username:password) | ApiKey <api key>
//	Content-Type: application/x-ndjson
//	Content-Encoding: gzip                         (compression: gzip)
//
//	{"create":{"_id":"<auditID>-<stage>"}}
//	{"@timestamp":…,"event":{…},"user":{…},…,"kubernetes":{"audit":{<event>}}}
//	…
//
// Every event is a create with _id = auditID + "-" + stage (see encode.go
// for the document): a batch sent again after a crash or a lost answer
// cannot store an event twice, because Elasticsearch answers 409 for an
// _id it holds, which counts as acknowledged. A data stream takes only
// creates; an index takes them too. (A data stream keeps _ids apart per
// backing index: an event re-sent after the stream rolled over is stored
// a second time. At most one batch is re-sent, so this is rare.)
//
// Send makes one attempt per request and classifies the answer; the agent
// retries:
//
//   - 200 with errors: false: every document stored.
//   - 200 with errors: true: per item, 200/201 stored, 409 already stored,
//     429 and 5xx sent again (outputs.PartialError), 401, 403 and 404
//     (no privilege on the index, an index missing with auto-create off)
//     sent again after a minute, any other status
//     (a mapping error, a document the pipeline refused) rejected and
//     dead-lettered (outputs.RejectedError) with the first item's error
//     type and reason. A 200 that is not a bulk answer (no errors key, or
//     an item count that differs) is never taken for success: the whole
//     request is sent again.
//   - 408, 429 and 5xx except 501, or no answer: retryable (Retry-After
//     honoured). On no answer, 502, 503 or 504 the next of urls is tried
//     at once, each at most once per request; the output stays on the
//     one that answered.
//   - 413: the request was too large for http.max_content_length: the
//     output halves its request size (down to 1 MiB) and the batch is sent
//     again in smaller requests.
//   - 401, 403, 404 and 3xx blame the configuration (credentials, a URL
//     with a wrong path, a proxy): retried after a minute, so the events
//     wait in the files and the output turns unready instead of filling
//     the dead-letter file. A rotated password or API key file is read
//     again and used at once.
//   - 501 and other 4xx: permanent.
package elasticsearch

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/audittail/audittail/outputs"
	"github.com/audittail/audittail/outputs/internal/pargzip"
)

// Defaults.
const (
	DefaultIndex           = "logs-kubernetes.audit_logs-default" // the data stream of Elastic's integration
	DefaultMaxRequestBytes = 10 << 20
	DefaultTimeout         = 60 * time.Second
	minRequestBytes        = 1 << 20
)

const (
	configRetry   = time.Minute
	maxRetryAfter = 10 * time.Minute
	errBodyLimit  = 1 << 10
	bulkBodyLimit = 64 << 20 // bytes of a bulk answer read
	drainLimit    = 64 << 10
	docOverhead   = 64 << 10 // room in a request for one document's wrapper and action line
)

// Options are the `elasticsearch` output's keys.
type Options struct {
	// URLs are the nodes (or the load balancer) to send to, tried in turn:
	// http(s)://host:port, with a path prefix if a proxy needs one.
	URLs []string `yaml:"urls"`
	// Index is a data stream (the default, logs-kubernetes.audit_logs-default,
	// is the one Elastic's Kubernetes integration reads) or an index.
	Index string `yaml:"index"`
	// Username and PasswordFile authenticate with HTTP Basic; APIKeyFile
	// with an API key (its encoded form, as Kibana shows it). The files
	// are read at start and again after a 401 or 403. Neither: no
	// Authorization header (a cluster without security).
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"password_file"`
	APIKeyFile   string `yaml:"api_key_file"`
	// Pipeline names an ingest pipeline to run (?pipeline=). Default none:
	// the index's default pipeline runs, as for any document.
	Pipeline string `yaml:"pipeline"`
	// ObjectMetadata is drop (the default, as Elastic's integration does)
	// or keep: whether requestObject.metadata and responseObject.metadata
	// are sent.
	ObjectMetadata string `yaml:"object_metadata"`
	// Compression is none (the default) or gzip.
	Compression string `yaml:"compression"`
	// MaxRequestBytes bounds a request's uncompressed body. Default 10MiB,
	// at most 100MiB (Elasticsearch's http.max_content_length). An event
	// whose document does not fit is sent without its responseObject, and
	// without its requestObject too if need be (annotated
	// audittail.io/truncated); if it still does not fit it is rejected.
	MaxRequestBytes ByteSize `yaml:"max_request_bytes"`
	// Timeout bounds one request, answer included. Default 60s.
	Timeout time.Duration `yaml:"timeout"`
	// TLS configures https:// URLs; certificates are verified against the
	// system roots (or tls.ca_file) by default.
	TLS TLSOptions `yaml:"tls"`

	// UserAgent is sent as User-Agent. Not a config key.
	UserAgent string `yaml:"-"`
}

// TLSOptions are the keys under `tls:`.
type TLSOptions = outputs.TLSOptions

// ByteSize is a size in bytes.
type ByteSize = outputs.ByteSize

// Output sends batches to Elasticsearch or OpenSearch.
type Output struct {
	mu     sync.Mutex // serialises Send and guards the buffers
	closed bool

	log       *slog.Logger
	client    *http.Client
	bases     []string // the urls, without a trailing slash
	hosts     []string
	cur       int    // index into bases of the node in use
	path      string // /{index}/_bulk?…
	index     string
	userAgent string
	gzip      bool
	maxBody   int
	timeout   time.Duration
	creds     credSource
	auth      atomic.Pointer[string]

	enc   encoder
	body  []byte
	zc    *pargzip.Compressor // compression: gzip
	state []lineState
	sent  []int

	truncated  atomic.Int64
	duplicates atomic.Int64
}

var (
	_ outputs.Output  = (*Output)(nil)
	_ outputs.Checker = (*Output)(nil)
)

// credSource reads the credentials from their files.
type credSource struct{ username, passwordFile, apiKeyFile string }

// header returns the Authorization header ("" for none).
func (c credSource) header() (string, error) {
	switch {
	case c.apiKeyFile != "":
		k, err := readSecret("api_key_file", c.apiKeyFile)
		if err != nil {
			return "", err
		}
		return "ApiKey " + k, nil
	case c.username != "":
		p, err := readSecret("password_file", c.passwordFile)
		if err != nil {
			return "", err
		}
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(c.username+":"+p)), nil
	}
	return "", nil
}

func readSecret(key, path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%s: cannot read %s: %w", key, path, err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("%s: %s is empty", key, path)
	}
	return s, nil
}

// DecodeOptions decodes the elasticsearch output's keys from c.
func DecodeOptions(c outputs.Config) (Options, error) {
	var o Options
	err := c.DecodeOptions(&o)
	return o, err
}

// FromConfig decodes the keys and makes the output.
func FromConfig(c outputs.Config, log *slog.Logger) (*Output, error) {
	o, err := DecodeOptions(c)
	if err != nil {
		return nil, err
	}
	return New(o, log)
}

// New validates o, reads the credentials and makes the output. It makes
// no request.
func New(o Options, log *slog.Logger) (*Output, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if len(o.URLs) == 0 {
		return nil, errors.New(`urls: required (e.g. ["https://es-0:9200"])`)
	}
	var bases, hosts []string
	var us []*url.URL
	for i, raw := range o.URLs {
		u, err := outputs.ParseHTTPURL(fmt.Sprintf("urls[%d]", i), raw, "https://es-0:9200", "username and password_file, or api_key_file")
		if err != nil {
			return nil, err
		}
		if u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("urls[%d]: %q must not have a query or fragment", i, raw)
		}
		if u.Scheme != us0Scheme(us, u.Scheme) {
			return nil, fmt.Errorf("urls[%d]: %q: mixing http:// and https:// URLs is not supported", i, raw)
		}
		us = append(us, u)
		bases = append(bases, strings.TrimRight(u.String(), "/"))
		hosts = append(hosts, u.Host)
	}
	if o.Index == "" {
		o.Index = DefaultIndex
	}
	if err := checkIndex(o.Index); err != nil {
		return nil, err
	}
	switch {
	case o.APIKeyFile != "" && (o.Username != "" || o.PasswordFile != ""):
		return nil, errors.New("api_key_file and username/password_file: set only one way to authenticate")
	case o.Username != "" && o.PasswordFile == "":
		return nil, errors.New("password_file: required with username")
	case o.Username == "" && o.PasswordFile != "":
		return nil, errors.New("username: required with password_file")
	}
	creds := credSource{username: o.Username, passwordFile: o.PasswordFile, apiKeyFile: o.APIKeyFile}
	auth, err := creds.header()
	if err != nil {
		return nil, err
	}
	switch o.ObjectMetadata {
	case "", "drop", "keep":
	default:
		return nil, fmt.Errorf("object_metadata: invalid value %q (want drop or keep)", o.ObjectMetadata)
	}
	switch o.Compression {
	case "", "none", "gzip":
	default:
		return nil, fmt.Errorf("compression: invalid value %q (want none or gzip)", o.Compression)
	}
	if o.MaxRequestBytes == 0 {
		o.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if o.MaxRequestBytes < minRequestBytes || o.MaxRequestBytes > 100<<20 {
		return nil, fmt.Errorf("max_request_bytes: %d out of range (want 1MiB to 100MiB)", o.MaxRequestBytes)
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Timeout < 0 {
		return nil, fmt.Errorf("timeout: %s must not be negative", o.Timeout)
	}
	if o.UserAgent == "" {
		o.UserAgent = "audittail"
	}
	tlsConf, err := o.TLS.Config(us[0].Hostname())
	if err != nil {
		return nil, err
	}
	if o.TLS.ServerName == "" {
		tlsConf.ServerName = "" // each URL's own host name is verified
	}
	if o.TLS.InsecureSkipVerify {
		log.Warn("elasticsearch output: TLS certificate verification is OFF (tls.insecure_skip_verify); anyone on the network path can read the credentials and the audit events", "urls", strings.Join(hosts, ","))
	}
	if us[0].Scheme == "http" {
		if auth != "" {
			log.Warn("elasticsearch output: urls are http://, the credentials and the audit events travel unencrypted", "urls", strings.Join(hosts, ","))
		} else {
			log.Warn("elasticsearch output: urls are http:// and no credentials are set; the audit events travel unencrypted", "urls", strings.Join(hosts, ","))
		}
	}

	q := url.Values{"filter_path": {"errors,items.*.status,items.*.error"}}
	if o.Pipeline != "" {
		q.Set("pipeline", o.Pipeline)
	}
	out := &Output{
		log:       log,
		client:    outputs.NewHTTPClient(tlsConf),
		bases:     bases,
		hosts:     hosts,
		path:      "/" + url.PathEscape(o.Index) + "/_bulk?" + q.Encode(),
		index:     o.Index,
		userAgent: o.UserAgent,
		gzip:      o.Compression == "gzip",
		maxBody:   int(o.MaxRequestBytes),
		timeout:   o.Timeout,
		creds:     creds,
		enc:       encoder{keepMetadata: o.ObjectMetadata == "keep", limit: int(o.MaxRequestBytes) - docOverhead},
	}
	out.auth.Store(&auth)
	if out.gzip {
		out.zc = pargzip.New(gzip.BestSpeed)
	}
	return out, nil
}

func us0Scheme(us []*url.URL, s string) string {
	if len(us) == 0 {
		return s
	}
	return us[0].Scheme
}

// checkIndex applies Elasticsearch's rules for index and data stream
// names, so that a typo is a start-up error rather than a 400 per batch.
func checkIndex(name string) error {
	if len(name) > 255 {
		return fmt.Errorf("index: %q is longer than 255 bytes", name)
	}
	if name == "." || name == ".." {
		return fmt.Errorf("index: %q is not a valid name", name)
	}
	switch name[0] {
	case '-', '_', '+':
		return fmt.Errorf("index: %q must not start with %q", name, name[0])
	}
	for _, c := range name {
		switch {
		case c >= 'A' && c <= 'Z':
			return fmt.Errorf("index: %q must be lowercase", name)
		case strings.ContainsRune(`\/*?"<>| ,#:`, c):
			return fmt.Errorf("index: %q must not contain %q", name, c)
		}
	}
	return nil
}

// Truncated returns how many events were stored with their objects cut
// out to fit max_request_bytes.
func (o *Output) Truncated() int64 { return o.truncated.Load() }

// Duplicates returns how many documents were answered 409: stored
// already, by an earlier send of the same batch.
func (o *Output) Duplicates() int64 { return o.duplicates.Load() }

type lineState = outputs.LineState

const (
	lineAccepted = outputs.LineAccepted
	lineRetry    = outputs.LineRetry
	lineRejected = outputs.LineRejected
	lineCut      = outputs.LineCut
)

// Send indexes b in one or more bulk requests. See the package comment.
func (o *Output) Send(ctx context.Context, b *outputs.Batch) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return outputs.ErrClosed
	}
	n := b.Len()
	if n == 0 {
		return nil
	}
	st := outputs.States(&o.state, n)

	var (
		retryErr  error
		permErr   error
		wholePerm bool
	)
	now := time.Now()
	i := 0
	for i < n {
		body := o.body[:0]
		sent := o.sent[:0]
		for ; i < n; i++ {
			mark := len(body)
			line, ev := b.Line(i), b.Event(i)
			body = o.enc.appendAction(body, line, ev)
			var res docResult
			body, res = o.enc.appendDoc(body, line, ev, now)
			if res == docTooLarge {
				body = body[:mark]
				st[i] = lineRejected
				if permErr == nil {
					permErr = fmt.Errorf("not sent: an event of %d bytes does not fit in max_request_bytes %d even without its requestObject and responseObject", len(line), o.maxBody)
				}
				continue
			}
			if len(body) > o.maxBody {
				body = body[:mark]
				if len(sent) > 0 {
					break // line i starts the next request
				}
				st[i] = lineRejected
				if permErr == nil {
					permErr = fmt.Errorf("not sent: an event does not fit in max_request_bytes %d", o.maxBody)
				}
				continue
			}
			if res == docCut {
				st[i] = lineCut
			}
			sent = append(sent, i)
		}
		o.body, o.sent = body, sent
		if len(sent) == 0 {
			continue
		}

		res := o.post(ctx, body, len(sent))
		switch {
		case res.err == nil && res.items == nil:
			o.mark(st, sent, lineAccepted)
		case res.items != nil:
			for k, it := range res.items {
				j := sent[k]
				switch code := it.status; {
				case code == 200 || code == 201:
					o.mark(st, sent[k:k+1], lineAccepted)
				case code == http.StatusConflict:
					o.duplicates.Add(1)
					o.mark(st, sent[k:k+1], lineAccepted)
				case outputs.RetryableStatus(code):
					st[j] = lineRetry
					if retryErr == nil {
						retryErr = fmt.Errorf("%s refused some documents for now: %d %s", o.hosts[o.cur], code, it.reason)
					}
				case code == http.StatusUnauthorized || code == http.StatusForbidden || code == http.StatusNotFound:
					// Per item, as for the whole request, these blame the
					// configuration: no privilege on the index, or an index
					// missing with auto-create off. The events wait.
					st[j] = lineRetry
					if retryErr == nil {
						retryErr = &outputs.RetryAfterError{After: configRetry, Err: fmt.Errorf("%s refused some documents: %d %s (check the user's privileges on index %s, create_doc and auto_configure, and that the index or its template exists)", o.hosts[o.cur], code, it.reason, o.index)}
					}
				default:
					st[j] = lineRejected
					if permErr == nil {
						permErr = fmt.Errorf("%s rejected some documents: %d %s", o.hosts[o.cur], code, it.reason)
					}
				}
			}
		case res.permanent:
			for _, j := range sent {
				st[j] = lineRejected
			}
			if permErr == nil || !wholePerm {
				permErr, wholePerm = res.err, true
			}
		default: // retryable: the rest is sent again
			retryErr = res.err
			for _, j := range sent {
				st[j] = lineRetry
			}
			for ; i < n; i++ {
				st[i] = lineRetry
			}
		}
	}

	return outputs.SendResult(st, retryErr, permErr, wholePerm)
}

func (o *Output) mark(st []lineState, lines []int, s lineState) {
	o.truncated.Add(int64(outputs.Mark(st, lines, s)))
}

// nextNode reports whether an answer (or none, code 0) is worth trying on
// the next URL at once.
func nextNode(code int) bool {
	return code == 0 || code == http.StatusBadGateway || code == http.StatusServiceUnavailable || code == http.StatusGatewayTimeout
}

type item struct {
	status int
	reason string
}

type result struct {
	err       error
	permanent bool
	items     []item // 200 with errors: true: one per document
}

// bulkAnswer is the part of a _bulk answer read. Items holds one object
// per document, keyed by the action (create).
type bulkAnswer struct {
	Errors *bool `json:"errors"`
	Items  []map[string]struct {
		Status int `json:"status"`
		Error  *struct {
			Type   string `json:"type"`
			Reason string `json:"reason"`
		} `json:"error"`
	} `json:"items"`
}

// post sends one bulk body of count documents, trying the URLs in turn,
// and classifies the answer.
func (o *Output) post(ctx context.Context, body []byte, count int) result {
	payload := body
	if o.gzip {
		z, err := o.zc.Compress(body)
		if err != nil {
			return result{err: fmt.Errorf("cannot gzip a bulk request: %w", err)}
		}
		payload = z
	}
	var res result
	for try := 0; try < len(o.bases); try++ {
		if err := ctx.Err(); err != nil {
			return result{err: err}
		}
		var code int
		res, code = o.postTo(ctx, o.cur, payload, count)
		if res.err == nil || !nextNode(code) || ctx.Err() != nil {
			return res
		}
		if len(o.bases) > 1 {
			next := (o.cur + 1) % len(o.bases)
			o.log.Warn("elasticsearch output: trying the next URL", "failed", o.hosts[o.cur], "next", o.hosts[next], "err", res.err)
			o.cur = next
		}
	}
	return res
}

func (o *Output) postTo(ctx context.Context, node int, payload []byte, count int) (result, int) {
	host := o.hosts[node]
	auth := o.auth.Load()
	resp, release, err := o.do(ctx, http.MethodPost, o.bases[node]+o.path, payload, *auth)
	defer release()
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return result{err: fmt.Errorf("posting to %s: %w", host, ctxErr)}, 0
		}
		return result{err: fmt.Errorf("cannot post to %s: %w", host, outputs.TransportError(err))}, 0
	}
	defer func() {
		io.Copy(io.Discard, io.LimitReader(resp.Body, drainLimit))
		resp.Body.Close()
	}()
	code := resp.StatusCode
	if code == http.StatusOK {
		data, err := io.ReadAll(io.LimitReader(resp.Body, bulkBodyLimit))
		if err != nil {
			return result{err: fmt.Errorf("reading the answer of %s: %w", host, err)}, 0
		}
		var ba bulkAnswer
		if err := json.Unmarshal(data, &ba); err != nil || ba.Errors == nil {
			return result{err: fmt.Errorf("%s answered 200 without a bulk answer (not stored, sending again): %s", host, outputs.Excerpt(data, errBodyLimit))}, code
		}
		if !*ba.Errors {
			return result{}, code
		}
		if len(ba.Items) != count {
			return result{err: fmt.Errorf("%s answered errors: true with %d items for %d documents (sending them all again)", host, len(ba.Items), count)}, code
		}
		items := make([]item, count)
		for k, m := range ba.Items {
			for _, r := range m { // one action per item
				items[k].status = r.Status
				if r.Error != nil {
					items[k].reason = r.Error.Type + ": " + r.Error.Reason
				}
			}
		}
		return result{items: items}, code
	}
	data, _ := io.ReadAll(io.LimitReader(resp.Body, errBodyLimit))
	err = fmt.Errorf("%s answered %d %s: %s", host, code, http.StatusText(code), outputs.Excerpt(data, errBodyLimit))
	switch {
	case code >= 200 && code <= 299:
		return result{err: fmt.Errorf("%w (a bulk request is answered 200; not taken for stored)", err)}, code
	case code == http.StatusRequestEntityTooLarge:
		if half := max(o.maxBody/2, minRequestBytes); half < o.maxBody {
			o.maxBody = half
			o.enc.limit = half - docOverhead
			o.log.Warn("elasticsearch output: request too large; sending smaller requests (raise http.max_content_length or lower max_request_bytes)", "host", host, "max_request_bytes", half)
			return result{err: fmt.Errorf("%w (sending again in requests of at most %d bytes)", err, half)}, code
		}
		return result{err: err, permanent: true}, code
	case outputs.RetryableStatus(code):
		if after, ok := outputs.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now(), maxRetryAfter); ok {
			return result{err: &outputs.RetryAfterError{After: after, Err: err}}, code
		}
		return result{err: err}, code
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		if h, herr := o.creds.header(); herr == nil && h != *auth {
			o.auth.Store(&h)
			o.log.Info("elasticsearch output: the credentials changed; retrying with the new ones", "host", host)
			return result{err: fmt.Errorf("%w (the credentials have changed since; retrying with the new ones)", err)}, code
		}
		return result{err: &outputs.RetryAfterError{After: configRetry, Err: fmt.Errorf("%w (check username and password_file or api_key_file, and the user's privileges: create_doc on the index)", err)}}, code
	case code == http.StatusNotFound:
		return result{err: &outputs.RetryAfterError{After: configRetry, Err: fmt.Errorf("%w (check the url's path and the index)", err)}}, code
	case code >= 300 && code <= 399:
		return result{err: &outputs.RetryAfterError{After: configRetry, Err: fmt.Errorf("%w (redirected to %q; redirects are not followed)", err, resp.Header.Get("Location"))}}, code
	}
	return result{err: err, permanent: true}, code
}

func (o *Output) do(ctx context.Context, method, u string, payload []byte, auth string) (*http.Response, func(), error) {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	g := outputs.NewReusedBody(payload)
	var body io.Reader
	if payload != nil {
		body = g.Reader()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		cancel()
		return nil, func() {}, err
	}
	if payload != nil {
		req.ContentLength = int64(len(payload))
		req.GetBody = func() (io.ReadCloser, error) { return g.Reader(), nil }
		req.Header.Set("Content-Type", "application/x-ndjson")
		if o.gzip {
			req.Header.Set("Content-Encoding", "gzip")
		}
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	req.Header.Set("User-Agent", o.userAgent)
	resp, err := o.client.Do(req)
	return resp, func() { cancel(); g.Release() }, err
}

// Check asks every URL for GET / with the credentials: it proves that the
// names resolve, the certificates verify and the credentials are
// accepted, and names the product and version. Elasticsearch before 7
// (whose bulk API wants a _type) is an error. A 403 passes: the
// credentials were accepted, and a user limited to writing the index
// lacks the monitor privilege GET / needs.
func (o *Output) Check(ctx context.Context) error {
	var errs []error
	for node := range o.bases {
		if err := o.checkNode(ctx, node); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (o *Output) checkNode(ctx context.Context, node int) error {
	host := o.hosts[node]
	resp, release, err := o.do(ctx, http.MethodGet, o.bases[node]+"/", nil, *o.auth.Load())
	defer release()
	if err != nil {
		return fmt.Errorf("cannot reach %s: %w", host, outputs.TransportError(err))
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode == http.StatusForbidden {
		// Authenticated, but without the monitor privilege GET / needs:
		// a user limited to create_doc on the index, as it should be.
		o.log.Info("elasticsearch output: connected; the credentials are accepted but may not read GET / (no monitor privilege), so the version is unknown", "host", host)
		return nil
	}
	if resp.StatusCode != http.StatusOK {
		err := fmt.Errorf("%s answered %d %s to GET /: %s", host, resp.StatusCode, http.StatusText(resp.StatusCode), outputs.Excerpt(data, errBodyLimit))
		if resp.StatusCode == http.StatusUnauthorized {
			err = fmt.Errorf("%w (check username and password_file or api_key_file)", err)
		}
		return err
	}
	var info struct {
		Version struct {
			Number       string `json:"number"`
			Distribution string `json:"distribution"`
		} `json:"version"`
	}
	if err := json.Unmarshal(data, &info); err != nil || info.Version.Number == "" {
		return fmt.Errorf("%s answered GET / with no version: not Elasticsearch or OpenSearch? %s", host, outputs.Excerpt(data, errBodyLimit))
	}
	product := "Elasticsearch"
	if info.Version.Distribution == "opensearch" {
		product = "OpenSearch"
	}
	major, _, _ := strings.Cut(info.Version.Number, ".")
	if m, err := strconv.Atoi(major); err == nil && product == "Elasticsearch" && m < 7 {
		return fmt.Errorf("%s is Elasticsearch %s: version 7 or later is required", host, info.Version.Number)
	}
	o.log.Info("elasticsearch output: connected", "host", host, "product", product, "version", info.Version.Number)
	return nil
}

// Close releases idle connections. Nothing is buffered between Sends.
func (o *Output) Close(context.Context) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return nil
	}
	o.closed = true
	o.client.CloseIdleConnections()
	return nil
}
