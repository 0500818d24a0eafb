package outputs

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ParseRetryAfter parses an HTTP Retry-After header, seconds or an HTTP
// date, as a wait from now capped at limit. ok is false when h is empty or
// malformed.
func ParseRetryAfter(h string, now time.Time, limit time.Duration) (d time.Duration, ok bool) {
	if h == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(strings.TrimSpace(h), 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		d = time.Duration(min(secs, int64(limit/time.Second))) * time.Second
	} else if t, err := http.ParseTime(h); err == nil {
		d = max(0, t.Sub(now))
	} else {
		return 0, false
	}
	return min(d, limit), true
}
