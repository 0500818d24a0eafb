// Package ibmcloudlogs implements the `ibmcloudlogs` output: audit events
// POSTed to the singles ingestion API of IBM Cloud Logs.
//
// Each batch becomes one request, or several when it would exceed
// max_request_bytes (at most 2MB, the API's limit per request):
//
//	POST {endpoint}/logs/v1/singles
//	Authorization: Bearer <IAM access token>
//	Content-Type: application/json
//
//	[{"applicationName":"kubernetes","subsystemName":"kube-audit","computerName":"<host>",
//	  "severity":3,"timestamp":<stageTimestamp in Unix ms>,"text":"<the raw event>"},…]
//
// severity is 5 (Error) for a 5xx response code, 4 (Warning) for a 4xx, 3
// (Info) otherwise; timestamp is the event's stageTimestamp, else its
// requestReceivedTimestamp, else the time of sending. A line that is not a
// valid audit event is sent as it is, with severity 3 and the time of
// sending. An entry longer than max_request_bytes is sent without the
// event's responseObject, and without its requestObject too if need be,
// with the annotation audittail.io/truncated naming what was cut; if it is
// still too long it is rejected (dead-lettered).
//
// The access token comes from IBM Cloud IAM for the API key in
// api_key_file:
//
//	POST {iam_endpoint}
//	Content-Type: application/x-www-form-urlencoded
//	Accept: application/json
//
//	grant_type=urn:ibm:params:oauth:grant-type:apikey&apikey=<key>
//
// It is cached and replaced before it expires (when 20% of its lifetime or
// five minutes remain, whichever comes first), and at once after the
// ingestion endpoint answers 401: the key file is read again for each new
// token, so a rotated key is used. The key never appears in an error or a
// log.
//
// Send makes one attempt per request (one more after a 401, with a new
// token) and classifies the answer; the agent retries:
//
//   - 2xx: accepted.
//   - 408, 429 and 5xx except 501, or no answer (connection, TLS, timeout):
//     retryable; Retry-After (seconds or an HTTP date, capped at
//     maxRetryAfter) becomes an outputs.RetryAfterError.
//   - 401 again with a new token: retryable.
//   - 403 and 3xx blame the configuration (the key's access policy, the
//     endpoint), not the events: retried after a minute
//     (outputs.RetryAfterError), so the events wait in the files and the
//     output turns unready, instead of filling the dead-letter file.
//     Redirects are not followed.
//   - 501 and other 4xx: permanent. Error messages carry at most 1 KiB of
//     the answer's body.
//
// A token IAM will not give is never the events' fault: a refused key (400
// or 401 from IAM) is retried after a minute, with an error naming
// api_key_file and the IAM host; a 5xx or no answer is retryable.
//
// When one Send made several requests and they fared differently, it
// returns outputs.PartialError with the lines to send again (lines
// rejected in the same Send included: they are rejected again on the
// resend and then dead-lettered), or outputs.RejectedError when the only
// failures were permanent.
package ibmcloudlogs

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/audittail/audittail/outputs"
)

// Defaults.
const (
	DefaultIAMEndpoint     = "https://iam.cloud.ibm.com/identity/token"
	DefaultApplicationName = "kubernetes"
	DefaultSubsystemName   = "kube-audit"
	DefaultMaxRequestBytes = 2 * 1000 * 1000 // the singles API's limit per request
	DefaultTimeout         = 30 * time.Second
	minRequestBytes        = 16 << 10
	singlesPath            = "/logs/v1/singles"
)

const (
	configRetry    = time.Minute      // retry after an answer that blames the configuration (403, 3xx, a refused key)
	maxRetryAfter  = 10 * time.Minute // a Retry-After beyond this is capped
	errBodyLimit   = 1 << 10          // bytes of an error answer kept in the error
	tokenBodyLimit = 64 << 10         // bytes of a token answer read
	drainLimit     = 64 << 10         // bytes of an answer read to reuse the connection
)

// Options are the `ibmcloudlogs` output's keys.
type Options struct {
	// Endpoint is the instance's ingestion endpoint (required), e.g.
	// https://<instance-id>.ingress.<region>.logs.cloud.ibm.com; events go
	// to {endpoint}/logs/v1/singles. http:// is allowed for a local relay;
	// the token then travels in clear text.
	Endpoint string `yaml:"endpoint"`
	// IAMEndpoint is where access tokens come from. Default
	// https://iam.cloud.ibm.com/identity/token.
	IAMEndpoint string `yaml:"iam_endpoint"`
	// APIKeyFile is a file holding an IBM Cloud API key (surrounding white
	// space ignored), e.g. a mounted Kubernetes Secret; the key needs the
	// Sender role on the Cloud Logs instance (required). It is read at
	// start and again for each new token.
	APIKeyFile string `yaml:"api_key_file"`
	// ApplicationName is every entry's applicationName. Default kubernetes.
	ApplicationName string `yaml:"application_name"`
	// SubsystemName is every entry's subsystemName. Default kube-audit.
	SubsystemName string `yaml:"subsystem_name"`
	// ComputerName is every entry's computerName. Default: os.Hostname()
	// (in a Pod, set it to the node name, e.g. computer_name: ${NODE_NAME}).
	ComputerName string `yaml:"computer_name"`
	// MaxRequestBytes bounds a request's body; a batch that would exceed
	// it is sent in several requests. Default and maximum 2MB, the API's
	// limit.
	MaxRequestBytes ByteSize `yaml:"max_request_bytes"`
	// Timeout bounds one request, answer included (token requests too).
	// Default 30s.
	Timeout time.Duration `yaml:"timeout"`
	// TLS configures https:// endpoints; certificates are verified
	// against the system roots by default. The same keys, but server_name,
	// apply to iam_endpoint.
	TLS TLSOptions `yaml:"tls"`

	// UserAgent is sent as User-Agent. Default: audittail/<module version>.
	// Not a config key: the program sets it.
	UserAgent string `yaml:"-"`
}

// TLSOptions are the keys under `tls:`, as for every network output.
type TLSOptions = outputs.TLSOptions

// ByteSize is a size in bytes, as everywhere in the configuration.
type ByteSize = outputs.ByteSize

// Output sends batches to an IBM Cloud Logs instance.
type Output struct {
	mu     sync.Mutex // serialises Send and guards the buffers
	closed bool

	log       *slog.Logger
	client    *http.Client
	url       string // {endpoint}/logs/v1/singles
	host      string // for error messages
	userAgent string
	maxBody   int
	timeout   time.Duration
	tokens    *tokenSource

	enc   encoder
	body  []byte
	state []lineState
	sent  []int

	truncated atomic.Int64
}

var (
	_ outputs.Output  = (*Output)(nil)
	_ outputs.Checker = (*Output)(nil)
)

// DecodeOptions decodes the ibmcloudlogs output's keys from c.
func DecodeOptions(c outputs.Config) (Options, error) {
	var o Options
	err := c.DecodeOptions(&o)
	return o, err
}

// FromConfig decodes the ibmcloudlogs output's keys and makes the output.
func FromConfig(c outputs.Config, log *slog.Logger) (*Output, error) {
	o, err := DecodeOptions(c)
	if err != nil {
		return nil, err
	}
	return New(o, log)
}

// New validates o, reads the API key and makes the output. It makes no
// request.
func New(o Options, log *slog.Logger) (*Output, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	u, err := outputs.ParseHTTPURL("endpoint", o.Endpoint, "https://<instance-id>.ingress.<region>.logs.cloud.ibm.com", "api_key_file")
	if err != nil {
		return nil, err
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("endpoint: %q must not have a query or fragment", o.Endpoint)
	}
	if o.IAMEndpoint == "" {
		o.IAMEndpoint = DefaultIAMEndpoint
	}
	iu, err := outputs.ParseHTTPURL("iam_endpoint", o.IAMEndpoint, DefaultIAMEndpoint, "api_key_file")
	if err != nil {
		return nil, err
	}
	if o.APIKeyFile == "" {
		return nil, fmt.Errorf("api_key_file: required (a file holding an IBM Cloud API key with the Sender role on the Cloud Logs instance)")
	}
	key, err := readKey(o.APIKeyFile)
	if err != nil {
		return nil, err
	}
	if o.ApplicationName == "" {
		o.ApplicationName = DefaultApplicationName
	}
	if o.SubsystemName == "" {
		o.SubsystemName = DefaultSubsystemName
	}
	if o.ComputerName == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("computer_name: not set and the system's host name is unknown: %w", err)
		}
		o.ComputerName = h
	}
	if o.MaxRequestBytes == 0 {
		o.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if o.MaxRequestBytes < minRequestBytes || o.MaxRequestBytes > DefaultMaxRequestBytes {
		return nil, fmt.Errorf("max_request_bytes: %d out of range (want 16KiB to 2MB, the API's limit per request)", o.MaxRequestBytes)
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
	iamTLS := o.TLS
	iamTLS.ServerName = "" // server_name is the ingestion endpoint's
	iamConf, err := iamTLS.Config(iu.Hostname())
	if err != nil {
		return nil, err
	}
	if o.TLS.InsecureSkipVerify {
		log.Warn("ibmcloudlogs output: TLS certificate verification is OFF (tls.insecure_skip_verify); anyone on the network path can read the API key, the tokens and the audit events", "host", u.Host, "iam_host", iu.Host)
	}
	if u.Scheme == "http" {
		log.Warn("ibmcloudlogs output: endpoint is http://, the access token and the audit events travel unencrypted", "host", u.Host)
	}
	if iu.Scheme == "http" {
		log.Warn("ibmcloudlogs output: iam_endpoint is http://, the API key travels unencrypted", "iam_host", iu.Host)
	}

	base := strings.TrimRight(u.String(), "/")
	if !strings.HasSuffix(base, singlesPath) {
		base += singlesPath
	}
	maxBody := int(o.MaxRequestBytes)
	enc := newEncoder(o.ApplicationName, o.SubsystemName, o.ComputerName, maxBody-2)
	if len(enc.head)+4<<10 > maxBody {
		return nil, fmt.Errorf("application_name, subsystem_name and computer_name: %d bytes together, too long for max_request_bytes %d", len(enc.head), maxBody)
	}
	out := &Output{
		log:       log,
		client:    outputs.NewHTTPClient(tlsConf),
		url:       base,
		host:      u.Host,
		userAgent: o.UserAgent,
		maxBody:   maxBody,
		timeout:   o.Timeout,
		tokens: &tokenSource{
			client:  outputs.NewHTTPClient(iamConf),
			url:     iu.String(),
			host:    iu.Host,
			keyFile: o.APIKeyFile,
			timeout: o.Timeout,
			ua:      o.UserAgent,
			now:     time.Now,
			log:     log,
			sem:     make(chan struct{}, 1),
			key:     key,
		},
		enc: enc,
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
// requestObject/responseObject cut out to fit max_request_bytes.
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
		now := time.Now()
		body := append(o.body[:0], '[')
		sent := o.sent[:0]
		for ; i < n; i++ {
			mark := len(body)
			if len(sent) > 0 {
				body = append(body, ',')
			}
			var res entryResult
			body, res = o.enc.appendEntry(body, b.Line(i), b.Event(i), now)
			if res == entryTooLarge {
				body = body[:mark]
				st[i] = lineRejected
				if permErr == nil {
					permErr = fmt.Errorf("not sent to %s: an event of %d bytes does not fit in max_request_bytes %d even without its requestObject and responseObject", o.host, len(b.Line(i)), o.maxBody)
				}
				continue
			}
			if len(body)+1 > o.maxBody {
				body = body[:mark]
				if len(sent) > 0 {
					break // line i starts the next request
				}
				// Not reached (an entry is at most maxBody-2 bytes), but
				// never loop on a line that fits no request.
				st[i] = lineRejected
				if permErr == nil {
					permErr = fmt.Errorf("not sent to %s: an event does not fit in max_request_bytes %d", o.host, o.maxBody)
				}
				continue
			}
			if res == entryCut {
				st[i] = lineCut
			}
			sent = append(sent, i)
		}
		body = append(body, ']')
		o.body, o.sent = body, sent
		if len(sent) == 0 {
			continue
		}

		res := o.post(ctx, body)
		switch {
		case res.err == nil:
			o.mark(st, sent, lineAccepted)
		case res.permanent:
			for _, j := range sent {
				st[j] = lineRejected
			}
			if permErr == nil || !wholePerm {
				permErr, wholePerm = res.err, true
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
	err       error // nil: accepted
	permanent bool  // err is not worth retrying
}

// post sends one body, with a new token once more if the endpoint answers
// 401, and classifies the answer.
func (o *Output) post(ctx context.Context, body []byte) result {
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return result{err: err}
		}
		token, err := o.tokens.get(ctx)
		if err != nil {
			return result{err: fmt.Errorf("not sent to %s: no access token: %w", o.host, err)}
		}
		res, unauthorized := o.postOnce(ctx, body, token)
		if !unauthorized {
			return res
		}
		o.tokens.invalidate(ctx, token)
		if attempt > 0 {
			return res
		}
		o.log.Info("ibmcloudlogs output: the endpoint refused the access token; getting a new one", "host", o.host)
	}
}

// postOnce sends one body with token. unauthorized reports a 401.
func (o *Output) postOnce(ctx context.Context, body []byte, token string) (res result, unauthorized bool) {
	resp, release, err := o.do(ctx, body, token)
	defer release()
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return result{err: fmt.Errorf("posting to %s: %w", o.host, ctxErr)}, false
		}
		return result{err: fmt.Errorf("cannot post to %s: %w", o.host, outputs.TransportError(err))}, false
	}
	defer func() {
		io.Copy(io.Discard, io.LimitReader(resp.Body, drainLimit))
		resp.Body.Close()
	}()
	code := resp.StatusCode
	if code >= 200 && code <= 299 {
		return result{}, false
	}
	data, _ := io.ReadAll(io.LimitReader(resp.Body, errBodyLimit))
	err = fmt.Errorf("%s answered %d %s: %s", o.host, code, http.StatusText(code), outputs.Excerpt(data, errBodyLimit))
	switch {
	case outputs.RetryableStatus(code):
		if after, ok := retryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
			return result{err: &outputs.RetryAfterError{After: after, Err: err}}, false
		}
		return result{err: err}, false
	case code == http.StatusUnauthorized:
		return result{err: fmt.Errorf("%w (the access token was refused, also a new one)", err)}, true
	case code == http.StatusForbidden:
		// The key's access policy, not the events: they wait in the
		// files (the output turns unready) instead of filling the
		// dead-letter file.
		return result{err: &outputs.RetryAfterError{After: configRetry, Err: fmt.Errorf("%w (check that the API key's IAM access policy gives the Sender role on the Cloud Logs instance)", err)}}, false
	case code >= 300 && code <= 399:
		return result{err: &outputs.RetryAfterError{After: configRetry, Err: fmt.Errorf("%w (redirected to %q; redirects are not followed, set endpoint to the final one)", err, resp.Header.Get("Location"))}}, false
	}
	return result{err: err, permanent: true}, false
}

// do sends one request. release must be called once the answer has been
// read: after it, the transport can no longer read payload, which the
// Output reuses.
func (o *Output) do(ctx context.Context, payload []byte, token string) (*http.Response, func(), error) {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	g := outputs.NewReusedBody(payload)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, o.url, g.Reader())
	if err != nil {
		cancel()
		return nil, func() {}, err
	}
	req.ContentLength = int64(len(payload))
	req.GetBody = func() (io.ReadCloser, error) { return g.Reader(), nil }
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", o.userAgent)
	resp, err := o.client.Do(req)
	release := func() { cancel(); g.Release() }
	return resp, release, err
}

// retryAfter parses a Retry-After header: seconds or an HTTP date.
func retryAfter(h string, now time.Time) (time.Duration, bool) {
	return outputs.ParseRetryAfter(h, now, maxRetryAfter)
}

// Check obtains a token (which proves the API key) and posts an empty
// array to the singles endpoint: it proves that the names resolve, the
// TLS certificates verify and the token is accepted, and creates no log
// entry. Any 2xx passes; another answer is an error naming it.
func (o *Output) Check(ctx context.Context) error {
	token, err := o.tokens.get(ctx)
	if err != nil {
		return fmt.Errorf("no access token for %s: %w", o.host, err)
	}
	resp, release, err := o.do(ctx, []byte("[]"), token)
	defer release()
	if err != nil {
		return fmt.Errorf("cannot post to %s: %w", o.host, outputs.TransportError(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		return nil
	}
	data, _ := io.ReadAll(io.LimitReader(resp.Body, errBodyLimit))
	err = fmt.Errorf("%s answered %d %s to an empty array: %s", o.host, resp.StatusCode, http.StatusText(resp.StatusCode), outputs.Excerpt(data, errBodyLimit))
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		o.tokens.invalidate(ctx, token)
		err = fmt.Errorf("%w (the access token from %s was refused)", err, o.tokens.host)
	case http.StatusForbidden:
		err = fmt.Errorf("%w (check that the API key's IAM access policy gives the Sender role on the Cloud Logs instance)", err)
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
	o.tokens.client.CloseIdleConnections()
	return nil
}
