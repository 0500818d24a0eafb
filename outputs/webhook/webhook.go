// Package webhook implements the `webhook` output: audit events POSTed as
// audit.k8s.io/v1 EventList JSON, exactly as kube-apiserver's webhook
// backend posts them, to any consumer of that backend: Falco's k8saudit
// plugin (http://falco:9765/k8s-audit), KubeSphere's kube-auditing
// (/audit/webhook/event), or audittail's own webhook input.
//
//	POST {url}
//	Content-Type: application/json
//	Authorization: Bearer <token>          (bearer_token_file or the kubeconfig's user)
//
//	{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[<event>,…]}
//
// Each item is the event line as read. A batch becomes one request, or
// several when it would pass max_body_bytes (Falco's default limit,
// 12 MiB). An event longer than max_event_bytes (Falco's per-event limit,
// 256 KiB) is sent without its responseObject, and without its
// requestObject too if need be, annotated audittail.io/truncated; if it is
// still too long, or the line is not an audit event (an EventList holds
// only Events), it is dead-lettered.
//
// Answers: 2xx acknowledges; 408, 429 and 5xx (not 501) and no answer are
// retried (Retry-After honoured); 401, 403 and 3xx blame the
// configuration (a token, a URL), not the events: retried every minute,
// so the events wait in the files and the output turns unready, and a
// rotated token file is read again; 413 halves the request size (down to
// one event of max_event_bytes) and sends again; other 4xx are
// dead-lettered.
package webhook

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/audittail/audittail/outputs"
)

// Defaults: Falco k8saudit's limits.
const (
	DefaultMaxBodyBytes  = 12 << 20  // webhookMaxBatchSize
	DefaultMaxEventBytes = 256 << 10 // maxEventSize
	DefaultTimeout       = 30 * time.Second
)

const (
	configRetry   = time.Minute
	maxRetryAfter = 10 * time.Minute
	errBodyLimit  = 1 << 10
	drainLimit    = 64 << 10
	listHead      = `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[`
	listTail      = `]}`
)

// Options are the `webhook` output's keys.
type Options struct {
	// URL is where to post. Required unless kubeconfig_file names the
	// server; when both are set, url wins.
	URL string `yaml:"url"`
	// KubeconfigFile is a kubeconfig in the format of kube-apiserver's
	// --audit-webhook-config-file: its current context's cluster gives
	// the server and CA, its user a token, tokenFile or client
	// certificate.
	KubeconfigFile string `yaml:"kubeconfig_file"`
	// BearerTokenFile holds a token sent as Authorization: Bearer; read at
	// start and again after a 401 or 403.
	BearerTokenFile string `yaml:"bearer_token_file"`
	// TLS configures https:// URLs (over what the kubeconfig gives).
	TLS TLSOptions `yaml:"tls"`
	// MaxBodyBytes bounds one request's body. Default 12MiB.
	MaxBodyBytes ByteSize `yaml:"max_body_bytes"`
	// MaxEventBytes is the longest event sent whole. Default 256KiB.
	MaxEventBytes ByteSize `yaml:"max_event_bytes"`
	// Timeout bounds one request, answer included. Default 30s.
	Timeout time.Duration `yaml:"timeout"`

	// UserAgent is sent as User-Agent. Not a config key.
	UserAgent string `yaml:"-"`
}

// TLSOptions are the keys under `tls:`.
type TLSOptions = outputs.TLSOptions

// ByteSize is a size in bytes.
type ByteSize = outputs.ByteSize

// Output posts batches as EventLists.
type Output struct {
	mu     sync.Mutex
	closed bool

	log       *slog.Logger
	client    *http.Client
	url       string
	host      string
	userAgent string
	maxBody   int
	maxEvent  int
	timeout   time.Duration
	token     tokenSource
	auth      atomic.Pointer[string]

	body    []byte
	scratch []byte
	sent    []int
	state   []lineState

	truncated atomic.Int64
}

var (
	_ outputs.Output  = (*Output)(nil)
	_ outputs.Checker = (*Output)(nil)
)

// tokenSource gives the Authorization header: a token file (read again
// after a 401/403), a literal kubeconfig token, or basic credentials.
type tokenSource struct {
	file   string
	static string // a whole header value
}

func (s tokenSource) header() (string, error) {
	if s.file != "" {
		b, err := os.ReadFile(s.file)
		if err != nil {
			return "", fmt.Errorf("bearer token: cannot read %s: %w", s.file, err)
		}
		tok := strings.TrimSpace(string(b))
		if tok == "" {
			return "", fmt.Errorf("bearer token: %s is empty", s.file)
		}
		return "Bearer " + tok, nil
	}
	return s.static, nil
}

// DecodeOptions decodes the webhook output's keys from c.
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

// New validates o, reads the kubeconfig and token and makes the output.
// It makes no request.
func New(o Options, log *slog.Logger) (*Output, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var kc *target
	if o.KubeconfigFile != "" {
		var err error
		if kc, err = loadKubeconfig(o.KubeconfigFile); err != nil {
			return nil, err
		}
	}
	raw := o.URL
	if raw == "" && kc != nil {
		raw = kc.server
	}
	u, err := outputs.ParseHTTPURL("url", raw, "http://falco:9765/k8s-audit", "bearer_token_file or kubeconfig_file")
	if err != nil {
		return nil, err
	}
	var ts tokenSource
	switch {
	case o.BearerTokenFile != "":
		ts.file = o.BearerTokenFile
	case kc != nil && kc.tokenFile != "":
		ts.file = kc.tokenFile
	case kc != nil && kc.token != "":
		ts.static = "Bearer " + kc.token
	case kc != nil && kc.basicUser != "":
		req, _ := http.NewRequest(http.MethodPost, "http://x", nil)
		req.SetBasicAuth(kc.basicUser, kc.basicPassword)
		ts.static = req.Header.Get("Authorization")
	}
	auth, err := ts.header()
	if err != nil {
		if o.BearerTokenFile != "" {
			return nil, fmt.Errorf("bearer_token_file: %w", err)
		}
		return nil, fmt.Errorf("kubeconfig_file: %w", err)
	}
	if o.MaxBodyBytes == 0 {
		o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if o.MaxEventBytes == 0 {
		o.MaxEventBytes = DefaultMaxEventBytes
	}
	if o.MaxEventBytes < 4<<10 {
		return nil, fmt.Errorf("max_event_bytes: %d is too small (want at least 4KiB)", o.MaxEventBytes)
	}
	if o.MaxBodyBytes < o.MaxEventBytes+ByteSize(len(listHead)+len(listTail)) {
		return nil, fmt.Errorf("max_body_bytes: %d must hold an EventList of one event of max_event_bytes %d", o.MaxBodyBytes, o.MaxEventBytes)
	}
	if o.MaxBodyBytes > 1<<30 {
		return nil, fmt.Errorf("max_body_bytes: %d is too large (want at most 1GiB)", o.MaxBodyBytes)
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
	tlsConf, err := o.TLS.Config(u.Hostname())
	if err != nil {
		return nil, err
	}
	if kc != nil {
		if err := kc.apply(tlsConf, o.TLS); err != nil {
			return nil, err
		}
	}
	if tlsConf.InsecureSkipVerify {
		log.Warn("webhook output: TLS certificate verification is OFF; anyone on the network path can read the audit events and the token", "host", u.Host)
	}
	if u.Scheme == "http" {
		log.Warn("webhook output: url is http://, the audit events (and any token) travel unencrypted", "host", u.Host)
	}
	out := &Output{
		log:       log,
		client:    outputs.NewHTTPClient(tlsConf),
		url:       u.String(),
		host:      u.Host,
		userAgent: o.UserAgent,
		maxBody:   int(o.MaxBodyBytes),
		maxEvent:  int(o.MaxEventBytes),
		timeout:   o.Timeout,
		token:     ts,
	}
	out.auth.Store(&auth)
	return out, nil
}

// Truncated returns how many events were delivered with their objects
// cut out to fit max_event_bytes.
func (o *Output) Truncated() int64 { return o.truncated.Load() }

type lineState = outputs.LineState

const (
	lineAccepted = outputs.LineAccepted
	lineRetry    = outputs.LineRetry
	lineRejected = outputs.LineRejected
	lineCut      = outputs.LineCut
)

// Send posts b as one or more EventLists. See the package comment.
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
	var retryErr, permErr error
	wholePerm := false
	reject := func(i int, err error) {
		st[i] = lineRejected
		if permErr == nil {
			permErr = err
		}
	}
	i := 0
	for i < n {
		body := append(o.body[:0], listHead...)
		sent := o.sent[:0]
		for ; i < n; i++ {
			line, ev := b.Line(i), b.Event(i)
			if ev == nil {
				reject(i, errors.New("not sent: a line that is not an audit event cannot be an EventList item"))
				continue
			}
			item, cut := line, false
			if len(line) > o.maxEvent {
				o.scratch, cut = outputs.CutObjects(o.scratch[:0], line, ev, o.maxEvent)
				if !cut || len(o.scratch) > o.maxEvent {
					reject(i, fmt.Errorf("not sent: an event of %d bytes is longer than max_event_bytes %d even without its requestObject and responseObject", len(line), o.maxEvent))
					continue
				}
				item = o.scratch
			}
			extra := len(item) + len(listTail)
			if len(sent) > 0 {
				extra++
			}
			if len(body)+extra > o.maxBody {
				break // the next request starts with line i (it fits alone: see New)
			}
			if len(sent) > 0 {
				body = append(body, ',')
			}
			body = append(body, item...)
			if cut {
				st[i] = lineCut
			}
			sent = append(sent, i)
		}
		body = append(body, listTail...)
		o.body, o.sent = body, sent
		if len(sent) == 0 {
			continue
		}
		res := o.post(ctx, body)
		switch {
		case res.err == nil:
			for _, j := range sent {
				if st[j]&lineCut != 0 {
					o.truncated.Add(1)
				}
				st[j] = lineAccepted
			}
		case res.permanent:
			for _, j := range sent {
				st[j] = lineRejected
			}
			if permErr == nil || !wholePerm {
				permErr, wholePerm = res.err, true
			}
		default:
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

type result struct {
	err       error
	permanent bool
}

func (o *Output) post(ctx context.Context, body []byte) result {
	auth := o.auth.Load()
	resp, release, err := o.do(ctx, body, *auth)
	defer release()
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return result{err: fmt.Errorf("posting to %s: %w", o.host, ctxErr)}
		}
		return result{err: fmt.Errorf("cannot post to %s: %w", o.host, outputs.TransportError(err))}
	}
	defer func() {
		io.Copy(io.Discard, io.LimitReader(resp.Body, drainLimit))
		resp.Body.Close()
	}()
	code := resp.StatusCode
	if code >= 200 && code <= 299 {
		return result{}
	}
	data, _ := io.ReadAll(io.LimitReader(resp.Body, errBodyLimit))
	err = fmt.Errorf("%s answered %d %s: %s", o.host, code, http.StatusText(code), outputs.Excerpt(data, errBodyLimit))
	switch {
	case outputs.RetryableStatus(code):
		if after, ok := outputs.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now(), maxRetryAfter); ok {
			return result{err: &outputs.RetryAfterError{After: after, Err: err}}
		}
		return result{err: err}
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		if h, herr := o.token.header(); herr == nil && h != *auth {
			o.auth.Store(&h)
			o.log.Info("webhook output: the token changed; retrying with the new one", "host", o.host)
			return result{err: fmt.Errorf("%w (the token has changed since; retrying with the new one)", err)}
		}
		return result{err: &outputs.RetryAfterError{After: configRetry, Err: fmt.Errorf("%w (check bearer_token_file or the kubeconfig's credentials)", err)}}
	case code >= 300 && code <= 399:
		return result{err: &outputs.RetryAfterError{After: configRetry, Err: fmt.Errorf("%w (redirected to %q; redirects are not followed, set url to the final endpoint)", err, resp.Header.Get("Location"))}}
	case code == http.StatusRequestEntityTooLarge:
		// The receiver takes less than max_body_bytes: send smaller
		// requests (down to one event of max_event_bytes) rather than
		// dead-letter a batch of good events.
		if half := max(o.maxBody/2, o.maxEvent+len(listHead)+len(listTail)); half < o.maxBody {
			o.maxBody = half
			o.log.Warn("webhook output: request too large for the receiver; sending smaller ones (lower max_body_bytes)", "host", o.host, "max_body_bytes", half)
			return result{err: fmt.Errorf("%w (sending again in requests of at most %d bytes)", err, half)}
		}
		return result{err: fmt.Errorf("%w (even a request of one event of max_event_bytes %d: lower max_event_bytes)", err, o.maxEvent), permanent: true}
	}
	return result{err: err, permanent: true}
}

func (o *Output) do(ctx context.Context, body []byte, auth string) (*http.Response, func(), error) {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	g := outputs.NewReusedBody(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, o.url, g.Reader())
	if err != nil {
		cancel()
		return nil, func() {}, err
	}
	req.ContentLength = int64(len(body))
	req.GetBody = func() (io.ReadCloser, error) { return g.Reader(), nil }
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, */*")
	req.Header.Set("User-Agent", o.userAgent)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := o.client.Do(req)
	return resp, func() { cancel(); g.Release() }, err
}

// Check posts an empty EventList: it proves that the name resolves, the
// certificate verifies and the token is accepted, and delivers no event.
func (o *Output) Check(ctx context.Context) error {
	resp, release, err := o.do(ctx, []byte(listHead+listTail), *o.auth.Load())
	defer release()
	if err != nil {
		return fmt.Errorf("cannot post to %s: %w", o.host, outputs.TransportError(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		return nil
	}
	data, _ := io.ReadAll(io.LimitReader(resp.Body, errBodyLimit))
	return fmt.Errorf("%s answered %d %s to an empty EventList: %s", o.host, resp.StatusCode, http.StatusText(resp.StatusCode), outputs.Excerpt(data, errBodyLimit))
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
