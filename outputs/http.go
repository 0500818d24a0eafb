package outputs

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"
)

// ParseHTTPURL checks that raw, the value of key, is an http:// or https://
// URL with a host and no credentials (credentials come from files: hint
// says which key).
func ParseHTTPURL(key, raw, example, hint string) (*url.URL, error) {
	if raw == "" {
		return nil, fmt.Errorf("%s: required (e.g. %s)", key, example)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	if u.Scheme != "https" && u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("%s: %q is not an http:// or https:// URL", key, raw)
	}
	if u.User != nil {
		return nil, fmt.Errorf("%s: must not hold credentials (use %s)", key, hint)
	}
	return u, nil
}

// NewHTTPClient returns the client of an HTTP output: TLS as configured,
// kept-alive connections, bodies sent as they are (no transparent
// decompression), redirects not followed (a POST turned into a GET would
// be acknowledged without delivering anything).
func NewHTTPClient(tlsConf *tls.Config) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSClientConfig:       tlsConf,
			TLSHandshakeTimeout:   10 * time.Second,
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          4,
			MaxIdleConnsPerHost:   4,
			IdleConnTimeout:       90 * time.Second,
			ExpectContinueTimeout: time.Second,
			DisableCompression:    true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// TransportError drops the *url.Error wrapper, whose text repeats the
// whole URL; the outputs' messages name the host instead.
func TransportError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) && ue.Err != nil {
		return ue.Err
	}
	return err
}

// Excerpt quotes at most limit bytes of an answer's body for an error
// message.
func Excerpt(b []byte, limit int) string {
	if len(b) > limit {
		b = b[:limit]
	}
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return "(empty body)"
	}
	return strconv.Quote(string(b))
}

// ReusedBody is a request body over a buffer the output reuses: the
// transport may read it (and read it again, through GetBody, for a retry
// on a fresh connection) only until Release, after which reads fail
// instead of seeing the next request's bytes.
type ReusedBody struct {
	mu       sync.Mutex
	data     []byte
	released bool
}

// errReleased is what a read after Release returns.
var errReleased = errors.New("request body released")

// NewReusedBody returns a ReusedBody over data.
func NewReusedBody(data []byte) *ReusedBody { return &ReusedBody{data: data} }

// Reader returns a reader of the whole body from its start.
func (g *ReusedBody) Reader() io.ReadCloser { return &reusedReader{g: g} }

// Release ends every reader's access to the buffer.
func (g *ReusedBody) Release() {
	g.mu.Lock()
	g.released, g.data = true, nil
	g.mu.Unlock()
}

type reusedReader struct {
	g   *ReusedBody
	off int
}

func (r *reusedReader) Read(p []byte) (int, error) {
	r.g.mu.Lock()
	defer r.g.mu.Unlock()
	if r.g.released {
		return 0, errReleased
	}
	if r.off >= len(r.g.data) {
		return 0, io.EOF
	}
	n := copy(p, r.g.data[r.off:])
	r.off += n
	return n, nil
}

func (r *reusedReader) Close() error { return nil }

// RetryableStatus reports whether an HTTP answer is worth sending the
// same request again for: 408, 429 and 5xx except 501.
func RetryableStatus(code int) bool {
	return code == http.StatusRequestTimeout || code == http.StatusTooManyRequests ||
		code >= 500 && code <= 599 && code != http.StatusNotImplemented
}
