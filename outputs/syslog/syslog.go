// Package syslog implements the `syslog` output: each audit event is one
// syslog message, RFC 5424 (default) or RFC 3164, sent over TCP with RFC 6587
// framing, over TLS (RFC 5425), over UDP (RFC 5426), or over RELP with an
// acknowledgement per message.
//
// An RFC 5424 message looks like this (one line; the MSG is the event's JSON
// line exactly as kube-apiserver wrote it, after a UTF-8 BOM):
//
//	<86>1 2026-11-23T10:54:44.671393Z cp-1 kube-apiserver - audit [audit@32473
//	auditID="…" stage="ResponseComplete" verb="get" user="alice@example.com"
//	resource="pods/log" namespace="default" code="200"] BOM{"kind":"Event",…}
//
// PRI is facility*8 + severity, the severity coming from
// responseStatus.code: 5xx err, 4xx warning, anything else info. TIMESTAMP
// is the stageTimestamp (the time of sending for a line that is not an
// event), HOSTNAME the node name, PROCID "-" and MSGID "audit". SD-PARAMs of
// fields the event lacks are left out; values are decoded from JSON and
// '"', '\' and ']' escaped. RFC 3164 messages carry no structured data, no
// BOM and a local-time timestamp without year: prefer RFC 5424.
//
// # Size
//
// A message larger than max_message_bytes is sent with its event's
// requestObject and responseObject cut out and the annotation
// "audittail.io/truncated" naming what was cut (Truncated counts them). An
// event still too large is returned in an outputs.RejectedError, so the agent
// dead-letters it.
//
// # Guarantee
//
// Syslog has no acknowledgements. Over TCP and TLS, Send returns nil once the
// whole batch was written to the connection and flushed: the bytes are in
// the kernel's send buffer, not yet known to be received. Before writing,
// Send checks whether the receiver closed the connection (a restart, an idle
// timeout) and reconnects; a write that fails closes the connection and
// returns an error, and the agent sends the whole batch again (the receiver
// may see part of it twice). What is lost is at most what the kernel had
// buffered when the receiver died after Send returned; RELP (relp://,
// relp+tls://, see relp.go) closes that gap: there Send returns nil only
// once the receiver answered every message "200". A new
// TLS 1.3 connection is used only after waiting about one handshake time for
// the server to refuse it (a client certificate it does not accept), so that
// a refused connection cannot swallow batches. Over UDP a message can be lost
// silently at any time: use it only where loss is acceptable.
package syslog

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/audittail/audittail/outputs"
	"github.com/audittail/audittail/outputs/internal/netx"
	"github.com/audittail/audittail/parser"
)

// Output sends audit events to a syslog receiver.
type Output struct {
	cfg *config
	log *slog.Logger

	mu       sync.Mutex
	closed   bool
	conn     net.Conn // nil until the first Send, and after a failure
	w        *bufio.Writer
	enc      encoder
	msg      []byte // the message being written
	frame    []byte // its octet count
	cut      []byte // an event with its objects cut out
	rejected []int
	relp     *relpSession // the open RELP session (relp:// addresses)
	inflight []relpInflight

	truncated atomic.Int64

	// dialed, when set, is called after every connection attempt (tests).
	dialed func(err error)
}

var (
	_ outputs.Output  = (*Output)(nil)
	_ outputs.Checker = (*Output)(nil)
)

// FromConfig decodes the syslog output's keys and makes the output.
func FromConfig(c outputs.Config, log *slog.Logger) (*Output, error) {
	var o Options
	if err := c.DecodeOptions(&o); err != nil {
		return nil, err
	}
	return New(o, log)
}

// New checks the options and returns the output. It does not connect: the
// first Send does (Check tests the connection).
func New(o Options, log *slog.Logger) (*Output, error) {
	cfg, err := o.check()
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.TLS.InsecureSkipVerify {
		log.Warn("syslog output does not verify the server's certificate (tls.insecure_skip_verify)", "address", o.Address)
	}
	return &Output{
		cfg: cfg,
		log: log,
		enc: encoder{
			rfc3164:  cfg.rfc3164,
			facility: cfg.facility,
			hostname: cfg.hostname,
			appName:  cfg.appName,
			sdID:     cfg.sdID,
		},
	}, nil
}

// Truncated returns how many events were sent with their objects cut out
// because they were larger than max_message_bytes.
func (o *Output) Truncated() int64 { return o.truncated.Load() }

// Send writes one message per line of b, then flushes. See the package
// documentation for what a nil return guarantees. Lines too large even
// without their objects are left out and reported in an
// *outputs.RejectedError after the rest was sent.
func (o *Output) Send(ctx context.Context, b *outputs.Batch) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return outputs.ErrClosed
	}
	if o.cfg.relp {
		return o.sendRELP(ctx, b)
	}
	// A syslog receiver sends nothing; bytes it sent anyway (TLS session
	// tickets, say) are read and ignored: only a closed connection counts.
	if o.conn != nil && o.cfg.network == "tcp" && netx.Probe(o.conn) == netx.Closed {
		o.log.Debug("syslog receiver closed the connection; reconnecting", "address", o.cfg.address)
		o.drop()
	}
	if o.conn == nil {
		if err := o.connect(ctx); err != nil {
			return err
		}
	}
	conn := o.conn
	if err := conn.SetWriteDeadline(time.Now().Add(o.cfg.writeTimeout)); err != nil {
		return o.fail(ctx, err)
	}
	// Cancelling ctx interrupts a blocked write.
	interrupted := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		conn.SetWriteDeadline(time.Unix(1, 0))
		close(interrupted)
	})
	defer func() {
		if !stop() {
			<-interrupted
		}
	}()

	o.rejected = o.rejected[:0]
	now := time.Now()
	for i := range b.Len() {
		msg, ok := o.encode(b.Line(i), b.Event(i), now)
		if !ok {
			o.rejected = append(o.rejected, i)
			continue
		}
		if err := o.write(msg); err != nil {
			return o.fail(ctx, err)
		}
	}
	if o.w != nil {
		if err := o.w.Flush(); err != nil {
			return o.fail(ctx, err)
		}
	}
	if len(o.rejected) > 0 {
		return &outputs.RejectedError{
			Lines: slices.Clone(o.rejected),
			Err:   fmt.Errorf("syslog message larger than max_message_bytes (%d) even without requestObject and responseObject, not sent to %s", o.cfg.maxMsg, o.cfg.address),
		}
	}
	return nil
}

// encode makes the message for one line into o.msg; ok is false when it is
// too large even with the objects cut out.
func (o *Output) encode(line []byte, ev *parser.Event, now time.Time) (_ []byte, ok bool) {
	o.msg = o.enc.appendMessage(o.msg[:0], line, ev, now)
	if len(o.msg) <= o.cfg.maxMsg {
		return o.msg, true
	}
	if ev == nil {
		return nil, false
	}
	// The JSON may take what the header leaves of max_message_bytes.
	limit := o.cfg.maxMsg - (len(o.msg) - len(line))
	o.cut, ok = outputs.CutObjects(o.cut[:0], line, ev, limit)
	if !ok {
		return nil, false
	}
	o.msg = o.enc.appendMessage(o.msg[:0], o.cut, ev, now)
	if len(o.msg) > o.cfg.maxMsg {
		return nil, false
	}
	o.truncated.Add(1)
	return o.msg, true
}

// write frames msg onto the connection: one datagram over UDP, else into
// the buffer with the octet count before it or an LF after it.
func (o *Output) write(msg []byte) error {
	if o.w == nil {
		_, err := o.conn.Write(msg)
		return err
	}
	if o.cfg.octetCount {
		o.frame = strconv.AppendInt(o.frame[:0], int64(len(msg)), 10)
		o.frame = append(o.frame, ' ')
		if _, err := o.w.Write(o.frame); err != nil {
			return err
		}
		_, err := o.w.Write(msg)
		return err
	}
	if _, err := o.w.Write(msg); err != nil {
		return err
	}
	return o.w.WriteByte('\n')
}

// fail closes the connection after a failed write and says why.
func (o *Output) fail(ctx context.Context, err error) error {
	o.drop()
	if ctx.Err() != nil {
		err = ctx.Err()
	}
	return fmt.Errorf("cannot send to syslog server %s: %w", o.cfg.address, err)
}

// connect dials the receiver (and shakes hands for TLS).
func (o *Output) connect(ctx context.Context) error {
	conn, err := o.dial(ctx)
	if o.dialed != nil {
		o.dialed(err)
	}
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return fmt.Errorf("cannot connect to syslog server %s: %w", o.cfg.address, err)
	}
	o.conn = conn
	if o.cfg.network == "tcp" {
		if o.w == nil {
			o.w = bufio.NewWriterSize(conn, 64<<10)
		} else {
			o.w.Reset(conn)
		}
	}
	return nil
}

func (o *Output) dial(ctx context.Context) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, o.cfg.dialTimeout)
	defer cancel()
	d := net.Dialer{KeepAlive: 30 * time.Second}
	conn, err := d.DialContext(ctx, o.cfg.network, o.cfg.hostport)
	if err != nil {
		return nil, err
	}
	if o.cfg.tls == nil {
		return conn, nil
	}
	start := time.Now()
	tc := tls.Client(conn, o.cfg.tls)
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, err
	}
	if tc.ConnectionState().Version == tls.VersionTLS13 {
		// In TLS 1.3 the client's handshake ends before the server has
		// checked the client's certificate (or its absence): a server that
		// refuses it sends an alert and closes. Without this wait, every
		// batch would be written to such a connection, lost, and reported
		// sent. The alert comes one round trip after the handshake, which
		// took at least one.
		wait := time.Since(start) + 20*time.Millisecond
		if err := awaitRefusal(ctx, tc, wait); err != nil {
			conn.Close()
			return nil, fmt.Errorf("server closed the connection after the TLS handshake: %w", err)
		}
	}
	return tc, nil
}

// awaitRefusal reads from a new TLS connection for wait (processing the
// server's session tickets) and returns the error if the server closed it.
func awaitRefusal(ctx context.Context, tc *tls.Conn, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := tc.SetReadDeadline(deadline); err != nil {
		return err
	}
	defer tc.SetReadDeadline(time.Time{})
	var buf [512]byte
	for {
		_, err := tc.Read(buf[:])
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// drop closes the connection without ceremony.
func (o *Output) drop() {
	if o.conn == nil {
		return
	}
	if tc, ok := o.conn.(*tls.Conn); ok {
		tc.NetConn().Close() // no close_notify on a connection that failed
	} else {
		o.conn.Close()
	}
	o.conn = nil
}

// Check connects to the receiver (TLS handshake included) and disconnects.
// Over UDP it only checks that the address resolves.
func (o *Output) Check(ctx context.Context) error {
	conn, err := o.dial(ctx)
	if err != nil {
		return fmt.Errorf("cannot connect to syslog server %s: %w", o.cfg.address, err)
	}
	if !o.cfg.relp {
		return conn.Close()
	}
	s, err := openRELP(ctx, conn, time.Now().Add(o.cfg.dialTimeout))
	if err != nil {
		conn.Close()
		return fmt.Errorf("cannot open a RELP session with %s: %w", o.cfg.address, err)
	}
	c := &Output{cfg: o.cfg, log: o.log, relp: s}
	return c.closeRELP(ctx)
}

// Close closes the connection. Over TCP and TLS it first half-closes it
// and waits, within ctx and at most 5s, for the receiver to close its side,
// which a receiver does once it has read everything.
func (o *Output) Close(ctx context.Context) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return nil
	}
	o.closed = true
	if o.relp != nil {
		return o.closeRELP(ctx)
	}
	if o.conn == nil {
		return nil
	}
	conn := o.conn
	o.conn = nil
	if o.cfg.network != "tcp" {
		return conn.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	var err error
	switch c := conn.(type) {
	case *tls.Conn:
		err = c.CloseWrite()
	case *net.TCPConn:
		err = c.CloseWrite()
	}
	if err == nil {
		// Wait for the receiver's EOF; what it sends is discarded.
		_, err = io.Copy(io.Discard, conn)
	}
	cerr := conn.Close()
	if err != nil && !errors.Is(err, net.ErrClosed) {
		o.log.Debug("syslog receiver did not close the connection cleanly", "address", o.cfg.address, "err", err)
	}
	if cerr != nil && !errors.Is(cerr, net.ErrClosed) {
		return fmt.Errorf("cannot close connection to syslog server %s: %w", o.cfg.address, cerr)
	}
	return nil
}
