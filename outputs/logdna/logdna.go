// Package logdna implements the `logdna` output: audit events POSTed to the
// LogDNA ingest API, as served by Mezmo (https://logs.mezmo.com/logs/ingest)
// and IBM Log Analysis (https://logs.<region>.logging.cloud.ibm.com/logs/ingest).
//
// Each batch becomes one request, or several when it would exceed
// max_request_bytes:
//
//	POST {url}?hostname=…&now=<unix ms>[&tags=…][&mac=…][&ip=…]
//	Authorization: Basic base64(<ingestion key>:)
//	Content-Type: application/json; charset=UTF-8
//	Content-Encoding: gzip                         (compress: gzip, the default)
//
//	{"lines":[{"timestamp":<stageTimestamp in ms>,"line":"<the raw event>",
//	  "app":"kube-apiserver-audit","level":"INFO|WARN|ERROR",
//	  "meta":{"auditID":…,"verb":…,"user":…,"resource":…,"namespace":…,"code":…,"stage":…}}]}
//
// level is ERROR for a 5xx response code, WARN for a 4xx, INFO otherwise. A
// meta key is left out when the event lacks the field (code when the event
// has no response status). A line that is not a valid audit event is sent
// as it is, with the time of sending, level INFO and no meta.
//
// Send makes one attempt and classifies the answer; the agent retries:
//
//   - 2xx: accepted. 207: per-line results (see below).
//   - 408, 429 and 5xx except 501, or no answer (connection, TLS, timeout):
//     retryable; Retry-After (seconds or an HTTP date, capped at
//     maxRetryAfter) becomes an outputs.RetryAfterError.
//   - 401, 403 and 3xx blame the configuration (the key, the URL), not the
//     events: retried after a minute (outputs.RetryAfterError), so the events
//     wait in the files and the output turns unready, instead of filling the
//     dead-letter file. A rotated key (the key file or variable now holds
//     another key) is used at once. Redirects are not followed: a POST
//     turned into a GET would be acknowledged without delivering anything.
//   - 501 and other 4xx: permanent. Error messages carry at most 1 KiB of
//     the answer's body.
//
// 207 Multi-Status: the body is {"status":[<code>,…]}, one HTTP status per
// line of the request in order, as LogDNA's own clients read it. Lines with
// a 2xx are accepted, lines with a retryable code are sent again, lines with
// any other code are rejected (dead-lettered). A 207 whose body does not
// have that shape (not JSON, or a status count that differs from the line
// count) is treated as "nothing accepted": every line of that request is
// sent again.
//
// When one Send made several requests and they fared differently, it
// returns outputs.PartialError with the lines to send again; lines rejected
// permanently in the same Send are included there too (they are rejected
// again on the resend and then dead-lettered through an
// outputs.RejectedError), because one error value cannot carry both.
package logdna

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"runtime/debug"
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
	DefaultApp             = "kube-apiserver-audit"
	DefaultLineLimit       = 32000   // the LogDNA client libraries' line limit
	DefaultMaxRequestBytes = 9 << 20 // under the ingest API's 10 MB per request
	DefaultTimeout         = 30 * time.Second
	DefaultCompressLevel   = 3
)

const (
	configRetry    = time.Minute      // retry after an answer that blames the configuration (401, 403, 3xx)
	maxRetryAfter  = 10 * time.Minute // a Retry-After beyond this is capped
	errBodyLimit   = 1 << 10          // bytes of an error answer kept in the error
	multiBodyLimit = 4 << 20          // bytes of a 207 answer read
	drainLimit     = 64 << 10         // bytes of an answer read to reuse the connection
)

// Options are the `logdna` output's keys.
type Options struct {
	// URL is the ingest endpoint (required), e.g.
	// https://logs.mezmo.com/logs/ingest or
	// https://logs.eu-de.logging.cloud.ibm.com/logs/ingest. http:// is
	// allowed for a local relay; the key then travels in clear text.
	URL string `yaml:"url"`
	// IngestionKeyFile is a file holding the ingestion key (surrounding
	// white space ignored), e.g. a mounted Kubernetes Secret. It is read
	// at start and again when the endpoint answers 401 or 403.
	IngestionKeyFile string `yaml:"ingestion_key_file"`
	// IngestionKeyEnv names an environment variable holding the key.
	// Exactly one of ingestion_key_file and ingestion_key_env is required;
	// there is no key for a literal key, so that it never sits in a config
	// file or a process listing.
	IngestionKeyEnv string `yaml:"ingestion_key_env"`
	// Hostname is sent as the hostname parameter. Default: os.Hostname()
	// (in a Pod, set it to the node name, e.g. hostname: ${NODE_NAME}).
	Hostname string `yaml:"hostname"`
	// Tags are sent as the tags parameter, comma-separated.
	Tags []string `yaml:"tags"`
	// MAC and IP are sent as the mac and ip parameters when set.
	MAC string `yaml:"mac"`
	IP  string `yaml:"ip"`
	// App is every line's app. Default kube-apiserver-audit.
	App string `yaml:"app"`
	// Compress is gzip (default) or none.
	Compress string `yaml:"compress"`
	// CompressLevel is the gzip level, 1 to 9. Default 3: on audit events
	// it compresses about 10x at the speed of level 1 (8x); level 6 gives
	// 14x at half the speed.
	CompressLevel int `yaml:"compress_level"`
	// MaxRequestBytes bounds a request's uncompressed body; a batch that
	// would exceed it is sent in several requests. Default 9 MiB.
	MaxRequestBytes ByteSize `yaml:"max_request_bytes"`
	// LineLimit is the longest event sent whole (bytes of the raw event).
	// A longer one is sent without its responseObject, and without its
	// requestObject too if need be, with the annotation
	// audittail.io/truncated naming what was cut; if it is still too long
	// it is rejected (dead-lettered). Default 32000.
	LineLimit ByteSize `yaml:"line_limit"`
	// Timeout bounds one request, answer included. Default 30s.
	Timeout time.Duration `yaml:"timeout"`
	// TLS configures https:// endpoints; certificates are verified
	// against the system roots by default.
	TLS TLSOptions `yaml:"tls"`

	// UserAgent is sent as User-Agent. Default: audittail/<module version>.
	// Not a config key: the program sets it.
	UserAgent string `yaml:"-"`
}

// TLSOptions are the keys under `tls:`, as for every network output.
type TLSOptions = outputs.TLSOptions

// ByteSize is a size in bytes, as everywhere in the configuration.
type ByteSize = outputs.ByteSize

// Output sends batches to a LogDNA ingest endpoint.
type Output struct {
	mu     sync.Mutex // serialises Send and guards the buffers
	closed bool

	log       *slog.Logger
	client    *http.Client
	endpoint  string // url with the constant query parameters
	host      string // for error messages
	userAgent string
	gzip      bool
	maxBody   int
	timeout   time.Duration
	key       keySource
	auth      atomic.Pointer[string] // "Basic …"

	enc   encoder
	body  []byte
	zc    *pargzip.Compressor // compression: gzip
	state []lineState
	sent  []int

	truncated atomic.Int64
}

var (
	_ outputs.Output  = (*Output)(nil)
	_ outputs.Checker = (*Output)(nil)
)

// keySource reads the ingestion key from a file or a variable.
type keySource struct{ file, env string }

func (k keySource) read() (string, error) {
	if k.file != "" {
		b, err := os.ReadFile(k.file)
		if err != nil {
			return "", fmt.Errorf("ingestion_key_file: cannot read %s: %w", k.file, err)
		}
		key := strings.TrimSpace(string(b))
		if key == "" {
			return "", fmt.Errorf("ingestion_key_file: %s is empty", k.file)
		}
		return key, nil
	}
	key := strings.TrimSpace(os.Getenv(k.env))
	if key == "" {
		return "", fmt.Errorf("ingestion_key_env: environment variable %s is not set or empty", k.env)
	}
	return key, nil
}

func basicAuth(key string) *string {
	s := "Basic " + base64.StdEncoding.EncodeToString([]byte(key+":"))
	return &s
}

// DecodeOptions decodes the logdna output's keys from c.
func DecodeOptions(c outputs.Config) (Options, error) {
	var o Options
	err := c.DecodeOptions(&o)
	return o, err
}

// FromConfig decodes the logdna output's keys and makes the output.
func FromConfig(c outputs.Config, log *slog.Logger) (*Output, error) {
	o, err := DecodeOptions(c)
	if err != nil {
		return nil, err
	}
	return New(o, log)
}

// New validates o, reads the ingestion key and makes the output. It makes
// no request.
func New(o Options, log *slog.Logger) (*Output, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	u, err := outputs.ParseHTTPURL("url", o.URL, "https://logs.mezmo.com/logs/ingest", "ingestion_key_file or ingestion_key_env")
	if err != nil {
		return nil, err
	}
	switch {
	case o.IngestionKeyFile != "" && o.IngestionKeyEnv != "":
		return nil, errors.New("ingestion_key_file and ingestion_key_env: set only one")
	case o.IngestionKeyFile == "" && o.IngestionKeyEnv == "":
		return nil, errors.New("ingestion_key_file or ingestion_key_env: one is required")
	}
	ks := keySource{file: o.IngestionKeyFile, env: o.IngestionKeyEnv}
	key, err := ks.read()
	if err != nil {
		return nil, err
	}
	if o.Hostname == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("hostname: not set and the system's host name is unknown: %w", err)
		}
		o.Hostname = h
	}
	if o.App == "" {
		o.App = DefaultApp
	}
	switch o.Compress {
	case "", "gzip":
		o.Compress = "gzip"
	case "none":
	default:
		return nil, fmt.Errorf("compress: invalid value %q (want gzip or none)", o.Compress)
	}
	if o.CompressLevel == 0 {
		o.CompressLevel = DefaultCompressLevel
	}
	if o.CompressLevel < gzip.BestSpeed || o.CompressLevel > gzip.BestCompression {
		return nil, fmt.Errorf("compress_level: %d out of range (want 1 to 9)", o.CompressLevel)
	}
	if o.LineLimit == 0 {
		o.LineLimit = DefaultLineLimit
	}
	if o.MaxRequestBytes == 0 {
		o.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if o.LineLimit < 1024 {
		return nil, fmt.Errorf("line_limit: %d is too small (want at least 1024)", o.LineLimit)
	}
	// An event escaped as a JSON string grows at most sixfold (\u00XX).
	if minBody := 6*o.LineLimit + 64<<10; o.MaxRequestBytes < minBody {
		return nil, fmt.Errorf("max_request_bytes: %d is too small for line_limit %d (want at least %d)", o.MaxRequestBytes, o.LineLimit, minBody)
	}
	if o.MaxRequestBytes > 1<<30 {
		return nil, fmt.Errorf("max_request_bytes: %d is too large (want at most 1GiB)", o.MaxRequestBytes)
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Timeout < 0 {
		return nil, fmt.Errorf("timeout: %s must not be negative", o.Timeout)
	}
	if o.UserAgent == "" {
		o.UserAgent = "audittail/" + moduleVersion()
	}

	tlsConf, err := o.TLS.Config(u.Hostname())
	if err != nil {
		return nil, err
	}
	if o.TLS.InsecureSkipVerify {
		log.Warn("logdna output: TLS certificate verification is OFF (tls.insecure_skip_verify); anyone on the network path can read the ingestion key and the audit events", "host", u.Host)
	}
	if u.Scheme == "http" {
		log.Warn("logdna output: url is http://, the ingestion key and the audit events travel unencrypted", "host", u.Host)
	}

	q := u.Query()
	q.Set("hostname", o.Hostname)
	if len(o.Tags) > 0 {
		q.Set("tags", strings.Join(o.Tags, ","))
	}
	if o.MAC != "" {
		q.Set("mac", o.MAC)
	}
	if o.IP != "" {
		q.Set("ip", o.IP)
	}
	u.RawQuery = q.Encode()

	out := &Output{
		log:       log,
		client:    outputs.NewHTTPClient(tlsConf),
		endpoint:  u.String(),
		host:      u.Host,
		userAgent: o.UserAgent,
		gzip:      o.Compress == "gzip",
		maxBody:   int(o.MaxRequestBytes),
		timeout:   o.Timeout,
		key:       ks,
		enc:       encoder{lineLimit: int(o.LineLimit)},
	}
	out.enc.app = appendString([]byte(`,"app":`), []byte(o.App))
	out.auth.Store(basicAuth(key))
	if out.gzip {
		out.zc = pargzip.New(o.CompressLevel)
	}
	return out, nil
}

func moduleVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// Truncated returns how many events were delivered with their
// requestObject/responseObject cut out to fit line_limit.
func (o *Output) Truncated() int64 { return o.truncated.Load() }

type lineState = outputs.LineState

const (
	lineAccepted = outputs.LineAccepted
	lineRetry    = outputs.LineRetry
	lineRejected = outputs.LineRejected
	lineCut      = outputs.LineCut
)

// Send posts b in one or more requests. See the package comment for how
// answers are classified.
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
		retryErr  error // the first reason to send lines again
		permErr   error // the first reason lines were rejected
		wholePerm bool  // permErr came from a whole-request answer
	)
	i := 0
	for i < n {
		nowMs := time.Now().UnixMilli()
		body := append(o.body[:0], `{"lines":[`...)
		sent := o.sent[:0]
		for ; i < n; i++ {
			mark := len(body)
			if len(sent) > 0 {
				body = append(body, ',')
			}
			var cut, ok bool
			body, cut, ok = o.enc.appendEntry(body, b.Line(i), b.Event(i), nowMs)
			if !ok {
				body = body[:mark]
				st[i] = lineRejected
				if permErr == nil {
					permErr = fmt.Errorf("not sent to %s: an event of %d bytes is longer than line_limit %d even without its requestObject and responseObject", o.host, len(b.Line(i)), o.enc.lineLimit)
				}
				continue
			}
			if len(body)+2 > o.maxBody {
				body = body[:mark]
				if len(sent) > 0 {
					break // line i starts the next request
				}
				st[i] = lineRejected
				if permErr == nil {
					permErr = fmt.Errorf("not sent to %s: an event does not fit in max_request_bytes %d", o.host, o.maxBody)
				}
				continue
			}
			if cut {
				st[i] = lineCut
			}
			sent = append(sent, i)
		}
		body = append(body, "]}"...)
		o.body, o.sent = body, sent
		if len(sent) == 0 {
			continue
		}

		res := o.post(ctx, body)
		switch {
		case res.err == nil && res.lineStatus == nil:
			o.mark(st, sent, lineAccepted)
		case res.lineStatus != nil:
			for k, code := range res.lineStatus {
				switch {
				case code >= 200 && code <= 299:
					o.mark(st, sent[k:k+1], lineAccepted)
				case outputs.RetryableStatus(code):
					st[sent[k]] = lineRetry
					if retryErr == nil {
						retryErr = fmt.Errorf("%s answered 207 with status %d for some events", o.host, code)
					}
				default:
					st[sent[k]] = lineRejected
					if permErr == nil {
						permErr = fmt.Errorf("%s answered 207 with status %d for some events", o.host, code)
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
			if res.stop {
				// The key is refused: every later request would be too.
				for ; i < n; i++ {
					st[i] = lineRejected
				}
			}
		default: // retryable: stop here, the rest is sent again
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

// mark sets the state of lines and counts the cut ones that were accepted.
func (o *Output) mark(st []lineState, lines []int, s lineState) {
	o.truncated.Add(int64(outputs.Mark(st, lines, s)))
}

// result is the outcome of one request.
type result struct {
	err        error // nil: accepted (lineStatus nil) or 207 (lineStatus set)
	permanent  bool  // err is not worth retrying
	stop       bool  // and no later request of the batch would fare better
	lineStatus []int // 207: one status per line
}

// post sends one body and classifies the answer.
func (o *Output) post(ctx context.Context, body []byte) result {
	if err := ctx.Err(); err != nil {
		return result{err: err}
	}
	payload := body
	if o.gzip {
		z, err := o.zc.Compress(body)
		if err != nil {
			return result{err: fmt.Errorf("cannot gzip a request to %s: %w", o.host, err)}
		}
		payload = z
	}
	auth := o.auth.Load()
	resp, release, err := o.do(ctx, payload, *auth)
	defer release()
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return result{err: fmt.Errorf("posting to %s: %w", o.host, ctxErr)}
		}
		return result{err: fmt.Errorf("cannot post to %s: %w", o.host, transportErr(err))}
	}
	defer func() {
		io.Copy(io.Discard, io.LimitReader(resp.Body, drainLimit))
		resp.Body.Close()
	}()

	code := resp.StatusCode
	switch {
	case code == http.StatusMultiStatus:
		data, _ := io.ReadAll(io.LimitReader(resp.Body, multiBodyLimit))
		var ms struct {
			Status []int `json:"status"`
		}
		if err := json.Unmarshal(data, &ms); err != nil || len(ms.Status) != len(o.sent) {
			return result{err: fmt.Errorf("%s answered 207 without one status per line (%d lines sent): %s", o.host, len(o.sent), excerpt(data))}
		}
		return result{lineStatus: ms.Status}
	case code >= 200 && code <= 299:
		return result{}
	}
	data, _ := io.ReadAll(io.LimitReader(resp.Body, errBodyLimit))
	err = fmt.Errorf("%s answered %d %s: %s", o.host, code, http.StatusText(code), excerpt(data))
	switch {
	case outputs.RetryableStatus(code):
		if after, ok := retryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
			return result{err: &outputs.RetryAfterError{After: after, Err: err}}
		}
		return result{err: err}
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		if key, kerr := o.key.read(); kerr == nil && *basicAuth(key) != *auth {
			o.auth.Store(basicAuth(key))
			o.log.Info("logdna output: the ingestion key changed; retrying with the new one", "host", o.host)
			return result{err: fmt.Errorf("%w (the ingestion key has changed since; retrying with the new one)", err)}
		}
		// A revoked key or a wrong URL is the configuration's fault, not
		// the events': they wait in the files (the output turns unready)
		// instead of filling the dead-letter file.
		return result{err: &outputs.RetryAfterError{After: configRetry, Err: fmt.Errorf("%w (check the ingestion key)", err)}}
	case code >= 300 && code <= 399:
		return result{err: &outputs.RetryAfterError{After: configRetry, Err: fmt.Errorf("%w (redirected to %q; redirects are not followed, set url to the final endpoint)", err, resp.Header.Get("Location"))}}
	}
	return result{err: err, permanent: true}
}

// do sends one request. release must be called once the answer has been
// read: after it, the transport can no longer read payload, which the
// Output reuses.
func (o *Output) do(ctx context.Context, payload []byte, auth string) (*http.Response, func(), error) {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	g := outputs.NewReusedBody(payload)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, o.endpoint+"&now="+strconv.FormatInt(time.Now().UnixMilli(), 10), g.Reader())
	if err != nil {
		cancel()
		return nil, func() {}, err
	}
	req.ContentLength = int64(len(payload))
	req.GetBody = func() (io.ReadCloser, error) { return g.Reader(), nil }
	req.Header.Set("Authorization", auth)
	req.Header.Set("Content-Type", "application/json; charset=UTF-8")
	req.Header.Set("User-Agent", o.userAgent)
	if o.gzip {
		req.Header.Set("Content-Encoding", "gzip")
	}
	resp, err := o.client.Do(req)
	release := func() { cancel(); g.Release() }
	return resp, release, err
}

// retryAfter parses a Retry-After header: seconds or an HTTP date.
func retryAfter(h string, now time.Time) (time.Duration, bool) {
	return outputs.ParseRetryAfter(h, now, maxRetryAfter)
}

func transportErr(err error) error { return outputs.TransportError(err) }

func excerpt(b []byte) string { return outputs.Excerpt(b, errBodyLimit) }

// Check posts an empty batch ({"lines":[]}) with the key: it proves that
// the name resolves, the TLS certificate verifies and the key is accepted,
// and creates no log line. Any 2xx passes; another answer is an error
// naming it.
func (o *Output) Check(ctx context.Context) error {
	payload := []byte(`{"lines":[]}`)
	if o.gzip {
		var zb bytes.Buffer
		zw := gzip.NewWriter(&zb)
		zw.Write(payload)
		zw.Close()
		payload = zb.Bytes()
	}
	resp, release, err := o.do(ctx, payload, *o.auth.Load())
	defer release()
	if err != nil {
		return fmt.Errorf("cannot post to %s: %w", o.host, transportErr(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		return nil
	}
	data, _ := io.ReadAll(io.LimitReader(resp.Body, errBodyLimit))
	err = fmt.Errorf("%s answered %d %s to an empty batch: %s", o.host, resp.StatusCode, http.StatusText(resp.StatusCode), excerpt(data))
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		err = fmt.Errorf("%w (check the ingestion key)", err)
	}
	return err
}

// Close releases idle connections. Send after Close returns
// outputs.ErrClosed. Nothing is buffered between Sends, so there is
// nothing to flush.
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
