// Package fluentd implements the `fluentd` output: Fluentd's Forward
// protocol v1, as Fluentd's in_forward and Fluent Bit's forward input speak
// it, over TCP, TLS or a unix socket.
//
// Each batch is one PackedForward message (CompressedPackedForward with
// `compress: gzip`) carrying a fresh `chunk` option; Send returns nil only
// once the receiver has answered {"ack": chunk}. Records are msgpack maps
// transcoded straight from each JSON line (parser.AppendMsgpack), with the
// keys and values of the line; a line that is not a JSON object is sent as
// {"message": line}. The entry time is the event's stageTimestamp as an
// EventTime (nanoseconds kept), else its requestReceivedTimestamp, else the
// time of sending.
//
// The receiver may see a batch twice (an ack lost or late), never a gap.
package fluentd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/audittail/audittail/outputs"
	"github.com/audittail/audittail/outputs/internal/netx"
)

// Output sends batches to one Fluentd (or Fluent Bit) forward receiver over
// one connection, opened on the first Send and again after any failure.
type Output struct {
	s   *settings
	log *slog.Logger

	mu     sync.Mutex // held for a whole Send: one batch on the wire at a time
	conn   *conn
	enc    *encoder
	closed bool
}

var (
	_ outputs.Output  = (*Output)(nil)
	_ outputs.Checker = (*Output)(nil)
)

// FromConfig decodes the fluentd output's keys and returns the output.
func FromConfig(c outputs.Config, log *slog.Logger) (*Output, error) {
	var o Options
	if err := c.DecodeOptions(&o); err != nil {
		return nil, err
	}
	return New(o, log)
}

// New validates o, reads the secret and TLS files it names, and returns the
// output. It does not connect: the first Send (or Check) does.
func New(o Options, log *slog.Logger) (*Output, error) {
	s, err := o.validate()
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("fluentd", s.display)
	if s.useTLS && s.tls.InsecureSkipVerify {
		log.Warn("TLS CERTIFICATE VERIFICATION IS OFF (tls.insecure_skip_verify): anyone on the path can read and change the audit events; use it only in tests")
	}
	enc := newEncoder(s.tag, s.gzip)
	enc.maxRecord = s.maxRecord
	return &Output{s: s, log: log, enc: enc}, nil
}

// Send delivers b as one message and waits for its ack. An error leaves the
// batch unacknowledged (the agent sends it again) and drops the connection,
// so that no late ack can be taken for a later batch. Errors wrapping
// ErrAuth come from a refused shared_key handshake. Send returns ctx.Err()
// when ctx is done first.
func (o *Output) Send(ctx context.Context, b *outputs.Batch) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return outputs.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if b.Len() == 0 {
		return nil
	}
	if o.conn != nil && !o.reusable(o.conn) {
		o.drop()
	}
	if o.conn == nil {
		c, err := dial(ctx, o.s)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		o.log.Debug("connected")
		o.conn = c
	}

	var chunk [24]byte
	newChunk(&chunk)
	msg := o.enc.encode(b, chunk[:], time.Now())
	var rejected error
	if n := len(o.enc.rejected); n > 0 {
		rejected = &outputs.RejectedError{Lines: slices.Clone(o.enc.rejected), Err: fmt.Errorf("event longer than max_record_bytes (%d) even without its objects", o.s.maxRecord)}
		if n == b.Len() {
			return rejected
		}
	}

	c := o.conn
	stop := c.watch(ctx)
	err := o.exchange(ctx, c, msg, chunk[:])
	usable := stop()
	if err != nil {
		o.drop()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
	if !usable || !c.keepalive {
		o.drop()
	}
	return rejected
}

// Truncated returns how many events were sent without their objects to fit
// max_record_bytes (counted when encoded; a resent batch counts again).
// It does not wait for a Send in progress.
func (o *Output) Truncated() int64 { return o.enc.truncated.Load() }

// exchange writes msg and waits for the ack of chunk. watch cuts the
// deadlines short when ctx is done; a cancellation that came before the
// deadlines were set is caught by the check after them.
func (o *Output) exchange(ctx context.Context, c *conn, msg, chunk []byte) error {
	c.nc.SetWriteDeadline(time.Now().Add(o.s.writeTimeout))
	c.nc.SetReadDeadline(time.Now().Add(o.s.ackTimeout))
	if err := ctx.Err(); err != nil {
		return err
	}
	if _, err := c.nc.Write(msg); err != nil {
		return fmt.Errorf("cannot send to fluentd at %s: %w", o.s.display, err)
	}
	c.nc.SetReadDeadline(time.Now().Add(o.s.ackTimeout))
	if err := ctx.Err(); err != nil {
		return err
	}
	v, err := readValue(c.br, 0)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return fmt.Errorf("no ack from fluentd at %s within %s (ack_timeout)", o.s.display, o.s.ackTimeout)
		}
		return fmt.Errorf("cannot read ack from fluentd at %s: %w", o.s.display, err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		if a, ok := v.([]any); ok && len(a) > 0 && asString(a[0]) == "HELO" {
			return fmt.Errorf("fluentd at %s requires a shared_key handshake: set shared_key_file: %w", o.s.display, ErrAuth)
		}
		return fmt.Errorf("fluentd at %s answered %.100v, want {\"ack\": chunk}", o.s.display, v)
	}
	if got := asString(m["ack"]); got != string(chunk) {
		return fmt.Errorf("fluentd at %s acknowledged chunk %q, want %q", o.s.display, got, chunk)
	}
	return nil
}

// reusable reports whether the idle connection can carry the next batch:
// the receiver has not closed it, and nothing it sent unasked waits to be
// read, in our buffer or on the socket (it would be taken for the next
// batch's ack).
func (o *Output) reusable(c *conn) bool {
	if c.br.Buffered() > 0 {
		o.log.Debug("the receiver sent bytes unasked; reconnecting")
		return false
	}
	switch netx.Probe(c.nc) {
	case netx.Closed:
		o.log.Debug("the receiver closed the idle connection; reconnecting")
		return false
	case netx.Data:
		o.log.Debug("the receiver sent bytes unasked; reconnecting")
		return false
	}
	return true
}

// drop closes the connection; the next Send dials again.
func (o *Output) drop() {
	if o.conn != nil {
		o.conn.close()
		o.conn = nil
	}
}

// Check connects to the receiver, completing the TLS and shared_key
// handshakes, and disconnects (`audittail validate --connect`).
func (o *Output) Check(ctx context.Context) error {
	c, err := dial(ctx, o.s)
	if err != nil {
		return err
	}
	defer c.close()
	if o.s.sharedKey != nil {
		return nil
	}
	// A receiver that wants a handshake greets first, and one that refuses
	// our TLS client certificate says so after the handshake: listen briefly.
	c.nc.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	v, err := readValue(c.br, 0)
	var ne net.Error
	switch {
	case err == nil:
		if a, ok := v.([]any); ok && len(a) > 0 && asString(a[0]) == "HELO" {
			return fmt.Errorf("fluentd at %s requires a shared_key handshake: set shared_key_file: %w", o.s.display, ErrAuth)
		}
		return fmt.Errorf("fluentd at %s sent %.100v unasked", o.s.display, v)
	case errors.As(err, &ne) && ne.Timeout():
		return nil
	default:
		return fmt.Errorf("fluentd at %s closed the connection: %w", o.s.display, err)
	}
}

// Close closes the connection. Every batch Send accepted was already
// acknowledged, so there is nothing to flush.
func (o *Output) Close(context.Context) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closed = true
	o.drop()
	return nil
}
