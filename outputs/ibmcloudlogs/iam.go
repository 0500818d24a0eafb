package ibmcloudlogs

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/audittail/audittail/outputs"
)

// minRefreshMargin is how long before its expiry a token is replaced at
// the latest (IAM tokens live an hour: they are replaced after 48 minutes,
// when 20% of their lifetime remains).
const minRefreshMargin = 5 * time.Minute

// tokenSource obtains IAM access tokens for the API key in a file and
// caches them until they near their expiry. It is safe for concurrent use.
type tokenSource struct {
	client  *http.Client
	url     string // the IAM token endpoint
	host    string // for error messages
	keyFile string
	timeout time.Duration
	ua      string
	log     *slog.Logger
	now     func() time.Time

	// sem (capacity 1) serialises token requests and guards the fields
	// below; it is taken in a select on ctx, so that a caller waiting for
	// another's token request still honours its context.
	sem       chan struct{}
	key       string // the last key read from keyFile
	token     string // "" when none is cached
	refreshAt time.Time
}

// readKey reads the API key from keyFile. Errors name api_key_file and
// the file, never the key.
func readKey(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("api_key_file: cannot read %s: %w", path, err)
	}
	k := strings.TrimSpace(string(b))
	if k == "" {
		return "", fmt.Errorf("api_key_file: %s is empty", path)
	}
	return k, nil
}

// get returns a token valid for a while yet, from the cache or from IAM.
func (s *tokenSource) get(ctx context.Context) (string, error) {
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return "", fmt.Errorf("waiting for a token from %s: %w", s.host, ctx.Err())
	}
	defer func() { <-s.sem }()
	if s.token != "" && s.now().Before(s.refreshAt) {
		return s.token, nil
	}
	return s.fetch(ctx)
}

// invalidate drops token from the cache (the endpoint refused it), so that
// the next get asks IAM again.
func (s *tokenSource) invalidate(ctx context.Context, token string) {
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return // the next get replaces the token anyway once it is refused again
	}
	defer func() { <-s.sem }()
	if s.token == token {
		s.token = ""
	}
}

// refreshAfter returns when a token that lives lifetime should be
// replaced: when less than 20% of its lifetime or less than five minutes
// remain, whichever comes first, but never before half its lifetime (a
// token that lives less than ten minutes is used for half of it).
func refreshAfter(lifetime time.Duration) time.Duration {
	margin := max(lifetime/5, minRefreshMargin)
	return lifetime - min(margin, lifetime/2)
}

// tokenAnswer is the IAM token endpoint's answer.
type tokenAnswer struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	Expiration  int64  `json:"expiration"`
}

// fetch asks IAM for a token, with the key read again from its file (so
// that a rotated key is used; the last key read serves if the file cannot
// be read now). s.sem is held.
func (s *tokenSource) fetch(ctx context.Context) (string, error) {
	if k, err := readKey(s.keyFile); err == nil {
		s.key = k
	} else if s.key == "" {
		return "", err
	} else {
		s.log.Warn("ibmcloudlogs output: cannot read the API key again; using the one read before", "error", err)
	}
	form := url.Values{
		"grant_type": {"urn:ibm:params:oauth:grant-type:apikey"},
		"apikey":     {s.key},
	}.Encode()
	rctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, s.url, strings.NewReader(form))
	if err != nil {
		return "", fmt.Errorf("cannot ask %s for a token: %w", s.host, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", s.ua)
	sent := s.now()
	resp, err := s.client.Do(req)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return "", fmt.Errorf("asking %s for a token: %w", s.host, ctxErr)
		}
		return "", fmt.Errorf("cannot ask %s for a token: %w", s.host, outputs.TransportError(err))
	}
	defer func() {
		io.Copy(io.Discard, io.LimitReader(resp.Body, drainLimit))
		resp.Body.Close()
	}()
	code := resp.StatusCode
	if code < 200 || code > 299 {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, errBodyLimit))
		err := fmt.Errorf("%s answered %d %s to a token request: %s", s.host, code, http.StatusText(code), s.redact(outputs.Excerpt(data, errBodyLimit)))
		switch {
		case code == http.StatusBadRequest || code == http.StatusUnauthorized:
			return "", &outputs.RetryAfterError{After: configRetry, Err: fmt.Errorf("%w (check the API key in api_key_file %s: IAM at %s refuses it)", err, s.keyFile, s.host)}
		case outputs.RetryableStatus(code):
			if after, ok := retryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
				return "", &outputs.RetryAfterError{After: after, Err: err}
			}
			return "", err
		}
		// 3xx, 403, 404, 501 …: the configuration (iam_endpoint, a
		// proxy) is wrong, not the events.
		return "", &outputs.RetryAfterError{After: configRetry, Err: fmt.Errorf("%w (check iam_endpoint)", err)}
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, tokenBodyLimit))
	if err != nil {
		return "", fmt.Errorf("cannot read the token answer of %s: %w", s.host, outputs.TransportError(err))
	}
	var a tokenAnswer
	if err := json.Unmarshal(data, &a); err != nil || a.AccessToken == "" {
		return "", &outputs.RetryAfterError{After: configRetry, Err: fmt.Errorf("%s answered %d without an access_token (check iam_endpoint)", s.host, code)}
	}
	if a.TokenType != "" && !strings.EqualFold(a.TokenType, "Bearer") {
		return "", &outputs.RetryAfterError{After: configRetry, Err: fmt.Errorf("%s issued a token of type %q, want Bearer (check iam_endpoint)", s.host, a.TokenType)}
	}
	lifetime := time.Duration(a.ExpiresIn) * time.Second
	if a.ExpiresIn <= 0 && a.Expiration > 0 {
		lifetime = time.Until(time.Unix(a.Expiration, 0))
	}
	if lifetime <= 0 {
		// No usable lifetime: use the token for this request only.
		s.token = ""
		return a.AccessToken, nil
	}
	s.token = a.AccessToken
	s.refreshAt = sent.Add(refreshAfter(lifetime))
	return s.token, nil
}

// redact removes the key from a quoted answer, should IAM echo it.
func (s *tokenSource) redact(text string) string {
	if s.key == "" {
		return text
	}
	return strings.ReplaceAll(text, s.key, "<api key>")
}
