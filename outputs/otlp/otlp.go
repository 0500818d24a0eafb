// Package otlp implements the `otlp` output: audit events as OpenTelemetry
// log records, POSTed as OTLP/HTTP protobuf (an ExportLogsServiceRequest)
// to {endpoint}/v1/logs, the path every OpenTelemetry Collector's otlp
// receiver and OTLP-native backends (IBM Cloud Logs, Grafana Loki, Elastic,
// Splunk, Dynatrace) accept.
//
// Each event is one LogRecord: time_unix_nano from stageTimestamp,
// observed_time_unix_nano the time the batch was encoded (by Prepare, while
// the batch before was in flight, or by Send; a retry keeps it), severity
// INFO, or WARN for a
// 4xx response code and ERROR for a 5xx, the body the event line as read
// (body: string) or the event as a KeyValueList (body: map), and the
// attributes OpenShift's logging gives audit events (k8s.audit.event.level,
// .stage, .verb, .id, .user_agent, .request.uri, .response.code,
// .object_ref.*, k8s.user.username, k8s.user.groups,
// k8s.audit.event.annotation.<key>). The resource has service.name
// kube-apiserver, k8s.node.name and, when configured, k8s.cluster.name.
//
// The messages are encoded by hand with protowire (see
// docs/decisions/0007-otlp-encoding.md): no generated code, no allocation
// per event.
//
// Answers, as the OTLP specification says: 2xx accepts (a partial_success
// with rejected_log_records > 0 is logged and counted: the response does
// not say which records, so they cannot be re-sent or dead-lettered);
// 429, 502, 503 and 504, and no answer at all, are retried (Retry-After
// honoured); every other status is permanent (the batch is dead-lettered),
// and a 401 or 403 re-reads headers_files first, so that a rotated token is
// used for the next batch.
package otlp

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"slices"
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
	DefaultTimeout         = 30 * time.Second
	DefaultMaxRequestBytes = 8 << 20 // uncompressed; the Collector's confighttp limit is 20 MiB
)

const (
	maxRetryAfter = 10 * time.Minute
	errBodyLimit  = 1 << 10
	respLimit     = 1 << 20
)

// Options are the `otlp` output's keys.
type Options struct {
	// Endpoint is the OTLP/HTTP base URL (required), e.g.
	// https://otel-gateway:4318; requests go to {endpoint}/v1/logs (an
	// endpoint that already ends in /v1/logs is used as it is).
	Endpoint string `yaml:"endpoint"`
	// Compression is gzip (default) or none.
	Compression string `yaml:"compression"`
	// Headers are sent with every request. Secrets do not belong here:
	// Authorization and any header named like a key or token must come
	// from HeadersFiles.
	Headers map[string]string `yaml:"headers"`
	// HeadersFiles maps a header to a file holding its value (a mounted
	// Secret), read at start and again after a 401 or 403.
	HeadersFiles map[string]string `yaml:"headers_files"`
	// TLS configures https:// endpoints; verified against the system roots
	// by default.
	TLS outputs.TLSOptions `yaml:"tls"`
	// Body is string (default: the event line as read) or map (the event
	// as a KeyValueList).
	Body string `yaml:"body"`
	// ClusterName, if set, is the k8s.cluster.name resource attribute.
	ClusterName string `yaml:"cluster_name"`
	// NodeName is the k8s.node.name resource attribute. Default: the host
	// name (in a Pod, set it to ${NODE_NAME}).
	NodeName string `yaml:"node_name"`
	// Timeout bounds one request, answer included. Default 30s.
	Timeout time.Duration `yaml:"timeout"`
	// MaxRequestBytes bounds a request's uncompressed body; a larger batch
	// is sent in several requests. Default 8 MiB.
	MaxRequestBytes outputs.ByteSize `yaml:"max_request_bytes"`

	// UserAgent and Version are set by the program, not the config.
	UserAgent string `yaml:"-"`
	Version   string `yaml:"-"`
}

// Output sends batches to an OTLP/HTTP logs endpoint.
type Output struct {
	mu     sync.Mutex // serialises Send
	closed bool

	log       *slog.Logger
	client    *http.Client
	url       string
	host      string
	userAgent string
	gzip      bool
	maxBody   int
	timeout   time.Duration
	headers   map[string]string
	files     map[string]string
	fileVals  atomic.Pointer[map[string]string]
	header    header

	enc encoder
	buf []byte
	zc  *pargzip.Compressor // compression: gzip

	rejected atomic.Int64 // records a partial_success said were rejected
}

var (
	_ outputs.Output   = (*Output)(nil)
	_ outputs.Checker  = (*Output)(nil)
	_ outputs.Preparer = (*Output)(nil)
)

// prepared is a batch encoded and compressed by Prepare, while the batch
// before it was in flight. Its buffers are its own (Prepare runs beside
// Send) and reused when the batch is prepared again.
type prepared struct {
	out     *Output
	enc     encoder
	buf     []byte
	zc      *pargzip.Compressor
	payload []byte // the request as posted: in buf, or gzipped in zc
}

// Prepare encodes (and compresses) b as one request, so that Send only
// posts it; a batch over max_request_bytes is left to Send, which splits
// it. The records' observed time is then the time of Prepare.
func (o *Output) Prepare(b *outputs.Batch) {
	v, _ := b.Prepared()
	p, _ := v.(*prepared)
	if p == nil || p.out != o {
		p = &prepared{out: o, enc: encoder{mapBody: o.enc.mapBody}}
		if o.gzip {
			p.zc = pargzip.New(gzip.BestSpeed)
		}
	}
	now := time.Now()
	body := o.header.start(p.buf)
	for i := range b.Len() {
		body = p.enc.appendRecord(body, b.Line(i), b.Event(i), now)
	}
	p.buf = body
	if len(body)-o.header.reserve() > o.maxBody {
		return
	}
	p.payload = o.header.finish(body)
	if o.gzip {
		z, err := p.zc.Compress(p.payload)
		if err != nil {
			return
		}
		p.payload = z
	}
	b.SetPrepared(p)
}

// secretHeader reports whether a header's value is a credential.
func secretHeader(name string) bool {
	n := strings.ToLower(name)
	return n == "authorization" || n == "proxy-authorization" || strings.Contains(n, "key") || strings.Contains(n, "token") || strings.Contains(n, "secret")
}

// DecodeOptions decodes the otlp output's keys from c.
func DecodeOptions(c outputs.Config) (Options, error) {
	var o Options
	err := c.DecodeOptions(&o)
	return o, err
}

// New validates o, reads the header files and makes the output. It makes
// no request.
func New(o Options, log *slog.Logger) (*Output, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	u, err := outputs.ParseHTTPURL("endpoint", o.Endpoint, "https://otel-gateway:4318", "headers_files")
	if err != nil {
		return nil, err
	}
	if !strings.HasSuffix(u.Path, "/v1/logs") {
		u.Path = strings.TrimSuffix(u.Path, "/") + "/v1/logs"
	}
	switch o.Compression {
	case "", "gzip":
		o.Compression = "gzip"
	case "none":
	default:
		return nil, fmt.Errorf("compression: invalid value %q (want gzip or none)", o.Compression)
	}
	switch o.Body {
	case "", "string":
		o.Body = "string"
	case "map":
	default:
		return nil, fmt.Errorf("body: invalid value %q (want string or map)", o.Body)
	}
	for _, name := range slices.Sorted(maps.Keys(o.Headers)) {
		if secretHeader(name) {
			return nil, fmt.Errorf("headers: %s holds a credential: give it in headers_files (a file, e.g. a mounted Secret), not in the config", name)
		}
		if _, dup := o.HeadersFiles[name]; dup {
			return nil, fmt.Errorf("headers and headers_files: %s is in both", name)
		}
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Timeout < 0 {
		return nil, fmt.Errorf("timeout: %s must not be negative", o.Timeout)
	}
	if o.MaxRequestBytes == 0 {
		o.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if o.MaxRequestBytes < 64<<10 || o.MaxRequestBytes > 1<<30 {
		return nil, fmt.Errorf("max_request_bytes: %d out of range (64KiB to 1GiB)", o.MaxRequestBytes)
	}
	if o.NodeName == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("node_name: not set and the system's host name is unknown: %w", err)
		}
		o.NodeName = h
	}
	if o.Version == "" {
		o.Version = "dev"
	}
	if o.UserAgent == "" {
		o.UserAgent = "audittail/" + o.Version
	}
	tlsConf, err := o.TLS.Config(u.Hostname())
	if err != nil {
		return nil, err
	}
	if o.TLS.InsecureSkipVerify {
		log.Warn("otlp output: TLS certificate verification is OFF (tls.insecure_skip_verify)", "host", u.Host)
	}
	if u.Scheme == "http" {
		log.Warn("otlp output: endpoint is http://, headers and audit events travel unencrypted", "host", u.Host)
	}
	out := &Output{
		log:    log,
		client: outputs.NewHTTPClient(tlsConf),
		url:    u.String(), host: u.Host, userAgent: o.UserAgent, gzip: o.Compression == "gzip",
		maxBody: int(o.MaxRequestBytes), timeout: o.Timeout, headers: o.Headers, files: o.HeadersFiles,
		enc: encoder{mapBody: o.Body == "map"},
	}
	resource := [][2]string{{"service.name", "kube-apiserver"}, {"k8s.node.name", o.NodeName}}
	if o.ClusterName != "" {
		resource = append(resource, [2]string{"k8s.cluster.name", o.ClusterName})
	}
	out.header = newHeader(resource, o.Version)
	vals, err := readHeaderFiles(o.HeadersFiles)
	if err != nil {
		return nil, err
	}
	out.fileVals.Store(&vals)
	if out.gzip {
		out.zc = pargzip.New(gzip.BestSpeed)
	}
	return out, nil
}

func readHeaderFiles(files map[string]string) (map[string]string, error) {
	vals := make(map[string]string, len(files))
	for name, path := range files {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("headers_files: %s: %w", name, err)
		}
		v := strings.TrimSpace(string(b))
		if v == "" {
			return nil, fmt.Errorf("headers_files: %s: %s is empty", name, path)
		}
		vals[name] = v
	}
	return vals, nil
}

// Rejected returns the records the endpoint said, in a partial success,
// that it rejected.
func (o *Output) Rejected() int64 { return o.rejected.Load() }

// Send posts b in one request, or several when it exceeds
// max_request_bytes.
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
	if v, ok := b.Prepared(); ok {
		if p, _ := v.(*prepared); p != nil && p.out == o {
			res := o.postPayload(ctx, p.payload, n)
			switch {
			case res.err == nil:
				return nil
			case res.permanent:
				return outputs.Permanent(res.err)
			}
			return res.err
		}
	}
	var (
		rejected  []int // lines refused for good, ascending
		permErr   error
		wholePerm bool // every line was refused by the endpoint's answers
		accepted  bool
		sent      []int
	)
	wholePerm = true
	for i := 0; i < n; {
		now := time.Now()
		body := o.header.start(o.buf)
		sent = sent[:0]
		for ; i < n; i++ {
			mark := len(body)
			body = o.enc.appendRecord(body, b.Line(i), b.Event(i), now)
			if len(body)-o.header.reserve() > o.maxBody {
				body = body[:mark]
				if len(sent) > 0 {
					break // line i starts the next request
				}
				rejected = append(rejected, i)
				wholePerm = false
				if permErr == nil {
					permErr = fmt.Errorf("not sent to %s: an event of %d bytes does not fit in max_request_bytes %d", o.host, len(b.Line(i)), o.maxBody)
				}
				continue
			}
			sent = append(sent, i)
		}
		o.buf = body
		if len(sent) == 0 {
			continue
		}
		res := o.post(ctx, o.header.finish(body), len(sent))
		switch {
		case res.err == nil:
			accepted = true
		case res.permanent:
			rejected = append(rejected, sent...)
			slices.Sort(rejected)
			permErr = res.err
		default:
			// Send this request's lines and every later one again (and,
			// as one error value cannot carry both, the refused ones,
			// which are refused again and then dead-lettered).
			if !accepted && len(rejected) == 0 {
				return res.err
			}
			lines := append(rejected, sent[0])
			for j := sent[0] + 1; j < n; j++ {
				lines = append(lines, j)
			}
			slices.Sort(lines)
			return &outputs.PartialError{Lines: slices.Compact(lines), Err: res.err}
		}
	}
	switch {
	case len(rejected) == 0:
		return nil
	case !accepted && wholePerm:
		return outputs.Permanent(permErr)
	}
	return &outputs.RejectedError{Lines: rejected, Err: permErr}
}

// result is the outcome of one request.
type result struct {
	err       error
	permanent bool
}

// retryable reports whether the OTLP specification says to retry status.
func retryable(code int) bool {
	switch code {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// post sends one ExportLogsServiceRequest of records records.
func (o *Output) post(ctx context.Context, body []byte, records int) result {
	// The payload is in o.buf or o.zc, which the next request reuses: do
	// ends the transport's access to it when the answer is closed.
	payload := body
	if o.gzip {
		z, err := o.zc.Compress(body)
		if err != nil {
			return result{err: fmt.Errorf("cannot gzip a request to %s: %w", o.host, err)}
		}
		payload = z
	}
	return o.postPayload(ctx, payload, records)
}

// postPayload posts one request (compressed already if it is to be) of
// records records and classifies the answer.
func (o *Output) postPayload(ctx context.Context, payload []byte, records int) result {
	resp, err := o.do(ctx, payload)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return result{err: fmt.Errorf("posting to %s: %w", o.host, ctxErr)}
		}
		return result{err: fmt.Errorf("cannot post to %s: %w", o.host, transportErr(err))}
	}
	defer resp.Body.Close()
	code := resp.StatusCode
	if code >= 200 && code <= 299 {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, respLimit))
		if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/x-protobuf") || resp.Header.Get("Content-Type") == "" {
			if n, msg, err := partialSuccess(data); err == nil && n > 0 {
				o.rejected.Add(n)
				o.log.Warn("otlp output: the endpoint accepted the request but rejected some of its records (it does not say which: they are not re-sent)",
					"host", o.host, "rejected", n, "of", records, "message", msg)
			}
		}
		return result{}
	}
	data, _ := io.ReadAll(io.LimitReader(resp.Body, errBodyLimit))
	err = fmt.Errorf("%s answered %d %s: %s", o.host, code, http.StatusText(code), excerpt(data))
	switch {
	case retryable(code):
		if after, ok := outputs.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now(), maxRetryAfter); ok {
			return result{err: &outputs.RetryAfterError{After: after, Err: err}}
		}
		return result{err: err}
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		if vals, rerr := readHeaderFiles(o.files); rerr == nil && !maps.Equal(vals, *o.fileVals.Load()) {
			o.fileVals.Store(&vals)
			o.log.Info("otlp output: headers_files changed; the next request uses the new values", "host", o.host)
		}
		err = fmt.Errorf("%w (check headers_files)", err)
	}
	return result{err: err, permanent: true}
}

// do sends one request. Closing the answer's body ends the transport's
// access to payload (reads fail after it), so that its buffer can be
// reused.
func (o *Output) do(ctx context.Context, payload []byte) (*http.Response, error) {
	ctx, cancelCtx := context.WithTimeout(ctx, o.timeout)
	g := outputs.NewReusedBody(payload)
	cancel := func() { cancelCtx(); g.Release() }
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, o.url, g.Reader())
	if err != nil {
		cancel()
		return nil, err
	}
	req.ContentLength = int64(len(payload))
	req.GetBody = func() (io.ReadCloser, error) { return g.Reader(), nil }
	if len(payload) == 0 {
		req.Body, req.GetBody = http.NoBody, nil // not chunked
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("User-Agent", o.userAgent)
	if o.gzip {
		req.Header.Set("Content-Encoding", "gzip")
	}
	for k, v := range o.headers {
		req.Header.Set(k, v)
	}
	for k, v := range *o.fileVals.Load() {
		req.Header.Set(k, v)
	}
	resp, err := o.client.Do(req)
	if err != nil {
		cancel()
		return nil, err
	}
	resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelBody) Close() error {
	io.Copy(io.Discard, io.LimitReader(c.ReadCloser, 64<<10))
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

func transportErr(err error) error { return outputs.TransportError(err) }

func excerpt(b []byte) string { return outputs.Excerpt(b, errBodyLimit) }

// Check posts an empty ExportLogsServiceRequest: it proves that the name
// resolves, TLS verifies and the headers are accepted, and creates no log
// record.
func (o *Output) Check(ctx context.Context) error {
	payload := []byte{}
	if o.gzip {
		var zb bytes.Buffer
		zw := gzip.NewWriter(&zb)
		zw.Close()
		payload = zb.Bytes()
	}
	resp, err := o.do(ctx, payload)
	if err != nil {
		return fmt.Errorf("cannot post to %s: %w", o.host, transportErr(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		return nil
	}
	data, _ := io.ReadAll(io.LimitReader(resp.Body, errBodyLimit))
	return fmt.Errorf("%s answered %d %s to an empty request: %s", o.host, resp.StatusCode, http.StatusText(resp.StatusCode), excerpt(data))
}

// Close releases idle connections; Send after Close returns
// outputs.ErrClosed.
func (o *Output) Close(context.Context) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.closed {
		o.closed = true
		o.client.CloseIdleConnections()
	}
	return nil
}
