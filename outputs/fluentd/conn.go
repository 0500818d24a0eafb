package fluentd

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha512"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"time"
)

// ErrAuth is wrapped by the errors of a failed shared_key handshake: a wrong
// shared_key, username or password, or a receiver that is not the one meant.
// Retrying does not fix it, but the batch is kept (not dead-lettered) until
// the configuration is fixed.
var ErrAuth = errors.New("fluentd handshake failed")

// conn is one established connection to the receiver.
type conn struct {
	nc net.Conn
	br *bufio.Reader
	// keepalive is false when the receiver's HELO asked the client to close
	// the connection after each message.
	keepalive bool
}

// dial connects to the receiver, completing the TLS and shared_key
// handshakes, within the dial timeout and ctx.
func dial(ctx context.Context, s *settings) (*conn, error) {
	ctx, cancel := context.WithTimeout(ctx, s.dialTimeout)
	defer cancel()
	nd := &net.Dialer{}
	if s.network == "tcp" {
		nd.KeepAliveConfig = net.KeepAliveConfig{Enable: s.keepalive > 0, Idle: s.keepalive, Interval: s.keepalive}
		if s.keepalive < 0 {
			nd.KeepAlive = -1
		}
	}
	var (
		nc  net.Conn
		err error
	)
	if s.useTLS {
		td := &tls.Dialer{NetDialer: nd, Config: s.tls}
		nc, err = td.DialContext(ctx, s.network, s.addr)
	} else {
		nc, err = nd.DialContext(ctx, s.network, s.addr)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot connect to fluentd at %s: %w", s.display, err)
	}
	c := &conn{nc: nc, br: bufio.NewReaderSize(nc, 4096), keepalive: true}
	if s.sharedKey == nil {
		return c, nil
	}
	if err := c.handshake(ctx, s); err != nil {
		nc.Close()
		return nil, err
	}
	return c, nil
}

// handshake runs HELO (from the receiver), PING (ours), PONG (theirs).
func (c *conn) handshake(ctx context.Context, s *settings) error {
	stop := c.watch(ctx)
	if d, ok := ctx.Deadline(); ok {
		c.nc.SetDeadline(d)
	}
	err := c.handshake1(ctx, s)
	if !stop() && err == nil {
		err = fmt.Errorf("shared_key handshake with fluentd at %s failed: %w", s.display, ctx.Err())
	}
	c.nc.SetDeadline(time.Time{})
	return err
}

func (c *conn) handshake1(ctx context.Context, s *settings) error {
	fail := func(err error) error {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return fmt.Errorf("shared_key handshake with fluentd at %s failed: %w", s.display, err)
	}
	v, err := readValue(c.br, 0)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return fmt.Errorf("shared_key handshake with fluentd at %s failed: no HELO within %s: is shared_key set on the receiver (<security> in in_forward)?", s.display, s.dialTimeout)
		}
		return fail(err)
	}
	helo, ok := v.([]any)
	if !ok || len(helo) < 2 || asString(helo[0]) != "HELO" {
		return fail(fmt.Errorf("%w: want HELO, got %.100v", errProtocol, v))
	}
	opts, _ := helo[1].(map[string]any)
	nonce := asString(opts["nonce"])
	authSalt := asString(opts["auth"])
	if ka, ok := opts["keepalive"].(bool); ok {
		c.keepalive = ka
	}

	var rnd [16]byte
	rand.Read(rnd[:])
	salt := hex.EncodeToString(rnd[:])
	digest := hexSHA512(salt, s.hostname, nonce, string(s.sharedKey))
	var userDigest string
	if authSalt != "" && s.username != "" {
		userDigest = hexSHA512(authSalt, s.username, string(s.password))
	}
	ping := appendArrayHeader(nil, 6)
	ping = appendStr(ping, "PING")
	ping = appendStr(ping, s.hostname)
	ping = appendStr(ping, salt)
	ping = appendStr(ping, digest)
	ping = appendStr(ping, s.username)
	ping = appendStr(ping, userDigest)
	if _, err := c.nc.Write(ping); err != nil {
		return fail(err)
	}

	v, err = readValue(c.br, 0)
	if err != nil {
		return fail(err)
	}
	pong, ok := v.([]any)
	if !ok || len(pong) < 5 || asString(pong[0]) != "PONG" {
		return fail(fmt.Errorf("%w: want PONG, got %.100v", errProtocol, v))
	}
	if accepted, _ := pong[1].(bool); !accepted {
		reason := asString(pong[2])
		if reason == "" {
			reason = "no reason given"
		}
		hint := "check shared_key_file or shared_key_env"
		if authSalt != "" {
			hint += ", username and password_file"
		}
		return fmt.Errorf("fluentd at %s refused the shared_key handshake: %q (%s): %w", s.display, reason, hint, ErrAuth)
	}
	server := asString(pong[3])
	if asString(pong[4]) != hexSHA512(salt, server, nonce, string(s.sharedKey)) {
		return fmt.Errorf("fluentd at %s answered the shared_key handshake with a wrong digest (it does not know our shared_key): %w", s.display, ErrAuth)
	}
	return nil
}

func hexSHA512(parts ...string) string {
	h := sha512.New()
	for _, p := range parts {
		h.Write([]byte(p))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// watch makes blocked reads and writes on c return when ctx is done. The
// returned stop reports whether the connection is still usable: false when
// the deadline was poisoned (or may still be), so the caller must drop it.
func (c *conn) watch(ctx context.Context) (stop func() bool) {
	if ctx.Done() == nil {
		return func() bool { return true }
	}
	return context.AfterFunc(ctx, func() {
		c.nc.SetDeadline(time.Unix(1, 0))
	})
}

func (c *conn) close() error { return c.nc.Close() }
