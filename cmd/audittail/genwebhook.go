package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/audittail/audittail/parser/auditgen"
)

// The webhook poster's retry policy (STYLE.md 11): 429, 5xx and connection
// errors are retried with capped exponential backoff and jitter, honouring
// Retry-After; other answers are final.
const (
	webhookBackoffMin    = 100 * time.Millisecond
	webhookBackoffMax    = 10 * time.Second
	webhookMaxRetryAfter = time.Minute     // a longer Retry-After is capped
	webhookGiveUp        = 5 * time.Minute // a request retried this long counts as refused
	webhookMaxWait       = time.Second     // a partial batch is sent after this long, like --audit-webhook-batch-max-wait
	errBodyLimit         = 1 << 10
)

// webhookGen is `audittail gen --webhook`: it posts audit.k8s.io/v1
// EventLists as kube-apiserver's webhook backend does.
type webhookGen struct {
	url                                  string
	batch, clients                       int
	timeout                              time.Duration
	caFile, certFile, keyFile, tokenFile string
	rate                                 int
	events                               int64
	duration                             time.Duration
	seed                                 uint64
	level                                auditgen.Level
	mixed                                bool
}

// webhookRequest is one EventList body and how many events it holds.
type webhookRequest struct {
	body   []byte
	events int
}

// webhookTally counts what the posters saw; safe for concurrent use.
type webhookTally struct {
	mu       sync.Mutex
	accepted int64
	refused  int64
	byStatus map[int]int64 // 0: connection errors
	firstErr error
}

func (t *webhookTally) request(status int) {
	t.mu.Lock()
	t.byStatus[status]++
	t.mu.Unlock()
}

func (t *webhookTally) done(events int, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err == nil {
		t.accepted += int64(events)
		return
	}
	t.refused += int64(events)
	if t.firstErr == nil {
		t.firstErr = err
	}
}

// String lists the requests by status, e.g. "200: 25, 429: 1, connection errors: 2".
func (t *webhookTally) String() string {
	codes := make([]int, 0, len(t.byStatus))
	for c := range t.byStatus {
		codes = append(codes, c)
	}
	slices.Sort(codes)
	var parts []string
	for _, c := range codes {
		if c == 0 {
			continue
		}
		parts = append(parts, fmt.Sprintf("%d: %d", c, t.byStatus[c]))
	}
	if n := t.byStatus[0]; n > 0 {
		parts = append(parts, fmt.Sprintf("connection errors: %d", n))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func genWebhook(ctx context.Context, o webhookGen, stdout io.Writer) error {
	u, err := url.Parse(o.url)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return usageError{fmt.Errorf("gen: --webhook %q is not an http(s) URL", o.url)}
	}
	switch {
	case o.batch < 1:
		return usageError{fmt.Errorf("gen: --batch %d: want at least 1", o.batch)}
	case o.clients < 1:
		return usageError{fmt.Errorf("gen: --clients %d: want at least 1", o.clients)}
	case (o.certFile == "") != (o.keyFile == ""):
		return usageError{errors.New("gen: --cert-file and --key-file go together")}
	case u.Scheme == "http" && (o.caFile != "" || o.certFile != ""):
		return usageError{fmt.Errorf("gen: --ca-file and --cert-file need an https URL, not %s", o.url)}
	}
	client, err := o.httpClient()
	if err != nil {
		return err
	}
	var token string
	if o.tokenFile != "" {
		data, err := os.ReadFile(o.tokenFile)
		if err != nil {
			return fmt.Errorf("gen: cannot read --token-file: %w", err)
		}
		if token = strings.TrimSpace(string(data)); token == "" {
			return fmt.Errorf("gen: --token-file %s is empty", o.tokenFile)
		}
	}

	tally := &webhookTally{byStatus: map[int]int64{}}
	requests := make(chan webhookRequest, o.clients)
	var wg sync.WaitGroup
	for range o.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range requests {
				tally.done(r.events, o.post(ctx, client, token, r.body, tally))
			}
		}()
	}
	start := time.Now()
	generated, size := o.generate(ctx, requests)
	close(requests)
	wg.Wait()
	el := time.Since(start)

	fmt.Fprintf(stdout, "gen: posted %d events (%s) to %s in %s: %d accepted, %d refused; requests by status: %s (seed %d)\n",
		generated, humanBytes(size), o.url, el.Round(time.Millisecond), tally.accepted, tally.refused, tally, o.seed)
	switch {
	case tally.firstErr != nil:
		return fmt.Errorf("gen: %d of %d events not accepted by %s: %w", tally.refused, generated, o.url, tally.firstErr)
	case tally.accepted < generated:
		return fmt.Errorf("gen: %d of %d events not accepted by %s: interrupted", generated-tally.accepted, generated, o.url)
	}
	return nil
}

func (o webhookGen) httpClient() (*http.Client, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.caFile != "" {
		pem, err := os.ReadFile(o.caFile)
		if err != nil {
			return nil, fmt.Errorf("gen: cannot read --ca-file: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("gen: --ca-file %s holds no PEM certificate", o.caFile)
		}
	}
	if o.certFile != "" {
		cert, err := tls.LoadX509KeyPair(o.certFile, o.keyFile)
		if err != nil {
			return nil, fmt.Errorf("gen: cannot load --cert-file %s and --key-file %s: %w", o.certFile, o.keyFile, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return &http.Client{
		Timeout: o.timeout,
		Transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			TLSClientConfig:     tc,
			ForceAttemptHTTP2:   true,
			MaxIdleConnsPerHost: o.clients,
			TLSHandshakeTimeout: 10 * time.Second,
		},
		// kube-apiserver's webhook does not follow redirects either.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, nil
}

// generate sends EventLists of o.batch events to requests at o.rate events
// per second, until o.events, o.duration or ctx; a partial batch goes out
// after webhookMaxWait. It returns the events and body bytes generated.
func (o webhookGen) generate(ctx context.Context, requests chan<- webhookRequest) (generated, size int64) {
	const head = `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[`
	g := auditgen.New(o.seed)
	start := time.Now()
	var deadline time.Time
	if o.duration > 0 {
		deadline = start.Add(o.duration)
	}
	var body []byte
	n, first := 0, time.Time{}
	flush := func() bool {
		if n == 0 {
			return true
		}
		body = append(body, "]}"...)
		select {
		case requests <- webhookRequest{body: body, events: n}:
		case <-ctx.Done():
			return false
		}
		generated += int64(n)
		size += int64(len(body))
		body, n = nil, 0
		return true
	}
	tick := 10 * time.Millisecond
	perTick := float64(o.rate) * tick.Seconds()
	owed, next := 0.0, start
	for {
		if ctx.Err() != nil || (o.events > 0 && generated+int64(n) >= o.events) || (!deadline.IsZero() && !time.Now().Before(deadline)) {
			break
		}
		k := int64(o.batch)
		if o.rate > 0 {
			owed += perTick
			k = int64(owed)
			owed -= float64(k)
			next = next.Add(tick)
		}
		if o.events > 0 {
			k = min(k, o.events-generated-int64(n))
		}
		for range k {
			now := time.Now()
			if n == 0 {
				body, first = append(make([]byte, 0, 1<<20), head...), now
			} else {
				body = append(body, ',')
			}
			if o.mixed {
				body = g.AppendMixed(body, now)
			} else {
				body = g.Append(body, o.level, now)
			}
			body = bytes.TrimSuffix(body, []byte("\n"))
			if n++; n == o.batch && !flush() {
				return generated, size
			}
		}
		if n > 0 && time.Since(first) >= webhookMaxWait && !flush() {
			return generated, size
		}
		if o.rate > 0 {
			if d := time.Until(next); d > 0 {
				select {
				case <-ctx.Done():
				case <-time.After(d):
				}
			}
		}
	}
	flush()
	return generated, size
}

// post sends one EventList until it is answered 2xx (nil), refused for
// good, or retried for webhookGiveUp.
func (o webhookGen) post(ctx context.Context, client *http.Client, token string, body []byte, tally *webhookTally) error {
	giveUp := time.Now().Add(webhookGiveUp)
	backoff := webhookBackoffMin
	for {
		wait, err := o.postOnce(ctx, client, token, body, tally)
		if err == nil || wait < 0 {
			return err
		}
		if wait == 0 {
			// No Retry-After: full jitter over the current backoff.
			wait = backoff/2 + rand.N(backoff/2+1)
			backoff = min(2*backoff, webhookBackoffMax)
		}
		if time.Now().Add(wait).After(giveUp) {
			return fmt.Errorf("%w (gave up after retrying for %s)", err, webhookGiveUp)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (interrupted while retrying)", err)
		case <-time.After(wait):
		}
	}
}

// postOnce makes one request. It returns nil when it was accepted;
// otherwise the error and how long to wait before a retry: the
// Retry-After, 0 for the backoff, or -1 when the answer is final.
func (o webhookGen) postOnce(ctx context.Context, client *http.Client, token string, body []byte, tally *webhookTally) (time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, o.url, bytes.NewReader(body))
	if err != nil {
		return -1, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, */*")
	req.Header.Set("User-Agent", "audittail-gen/"+version)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		tally.request(0)
		if ctx.Err() != nil {
			return -1, fmt.Errorf("interrupted: %w", ctx.Err())
		}
		// A certificate that does not verify will not verify on a retry.
		var verr *tls.CertificateVerificationError
		var aerr tls.AlertError
		if errors.As(err, &verr) || errors.As(err, &aerr) {
			return -1, err
		}
		return 0, err
	}
	defer resp.Body.Close()
	tally.request(resp.StatusCode)
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, errBodyLimit))
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // reuse the connection
	code := resp.StatusCode
	if code >= 200 && code <= 299 {
		return 0, nil
	}
	err = fmt.Errorf("%s answered %d %s: %s", o.url, code, http.StatusText(code), strings.TrimSpace(string(msg)))
	if code != http.StatusTooManyRequests && (code < 500 || code == http.StatusNotImplemented) {
		return -1, err
	}
	if d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
		return max(d, time.Millisecond), err
	}
	return 0, err
}

// parseRetryAfter parses a Retry-After header, seconds or an HTTP date,
// capped at webhookMaxRetryAfter.
func parseRetryAfter(h string, now time.Time) (time.Duration, bool) {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(h, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		return time.Duration(min(secs, int64(webhookMaxRetryAfter/time.Second))) * time.Second, true
	}
	if t, err := http.ParseTime(h); err == nil {
		return min(max(0, t.Sub(now)), webhookMaxRetryAfter), true
	}
	return 0, false
}
