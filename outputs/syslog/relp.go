package syslog

// RELP, the Reliable Event Logging Protocol of rsyslog's librelp
// (https://github.com/rsyslog/librelp/blob/master/doc/relp.html): every
// message is a frame
//
//	TXNR SP COMMAND SP DATALEN [SP DATA] LF
//
// with TXNR 1 to 999,999,999 counting up per session (wrapping to 1),
// COMMAND 1 to 32 letters, DATALEN the bytes of DATA in decimal. A session
// starts with an "open" offering relp_version=0 and commands=syslog, which
// the server answers "rsp" with "200 OK" and its own offers; then each
// "syslog" frame carries one message and is answered by an "rsp" of the
// same TXNR whose DATA starts with a status code (200 = the server has
// taken the message). "close" ends the session (answered "rsp"); the
// server may send "serverclose" (TXNR 0) at any time before it goes away.
// The Go RELP clients found (2026-12) are small and little used (see
// docs/decisions/0008), so this is the protocol written from that
// description; its frame parser is fuzzed.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/audittail/audittail/outputs"
	"github.com/audittail/audittail/outputs/internal/netx"
)

const (
	relpMaxTxnr    = 999_999_999
	relpMaxRspData = 64 << 10 // an rsp or serverclose carries a status line, or offers
	relpOffers     = "relp_version=0\nrelp_software=audittail\ncommands=syslog"
)

// relpFrame is one frame read from the server.
type relpFrame struct {
	txnr int
	cmd  string
	data []byte
}

// errRELPProtocol marks a server that does not speak RELP as expected.
var errRELPProtocol = errors.New("RELP protocol error")

// readRELPFrame reads one frame. A frame with more than max bytes of data
// is an error (the server answers with short status lines).
func readRELPFrame(r *bufio.Reader, max int) (relpFrame, error) {
	var f relpFrame
	num := func(what string, limit int) (int, error) {
		n, digits := 0, 0
		for {
			c, err := r.ReadByte()
			if err != nil {
				return 0, err
			}
			if c == ' ' || c == '\n' {
				if digits == 0 {
					return 0, fmt.Errorf("%w: empty %s", errRELPProtocol, what)
				}
				r.UnreadByte()
				return n, nil
			}
			if c < '0' || c > '9' || digits == 9 {
				return 0, fmt.Errorf("%w: bad %s (byte %q)", errRELPProtocol, what, c)
			}
			n = n*10 + int(c-'0')
			digits++
			if n > limit {
				return 0, fmt.Errorf("%w: %s %d too large", errRELPProtocol, what, n)
			}
		}
	}
	expect := func(want byte) error {
		c, err := r.ReadByte()
		if err != nil {
			return err
		}
		if c != want {
			return fmt.Errorf("%w: want %q, got %q", errRELPProtocol, want, c)
		}
		return nil
	}
	var err error
	if f.txnr, err = num("TXNR", relpMaxTxnr); err != nil {
		return f, err
	}
	if err := expect(' '); err != nil {
		return f, err
	}
	var cmd [32]byte
	n := 0
	for {
		c, err := r.ReadByte()
		if err != nil {
			return f, err
		}
		if c == ' ' {
			break
		}
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') || n == len(cmd) {
			return f, fmt.Errorf("%w: bad command (byte %q)", errRELPProtocol, c)
		}
		cmd[n] = c
		n++
	}
	if n == 0 {
		return f, fmt.Errorf("%w: empty command", errRELPProtocol)
	}
	f.cmd = string(cmd[:n])
	size, err := num("DATALEN", max)
	if err != nil {
		return f, err
	}
	c, err := r.ReadByte()
	if err != nil {
		return f, err
	}
	if c == ' ' {
		f.data = make([]byte, size)
		if _, err := io.ReadFull(r, f.data); err != nil {
			return f, err
		}
		c, err = r.ReadByte()
		if err != nil {
			return f, err
		}
	} else if size != 0 {
		return f, fmt.Errorf("%w: DATALEN %d without data", errRELPProtocol, size)
	}
	if c != '\n' {
		return f, fmt.Errorf("%w: frame not ended by LF (byte %q)", errRELPProtocol, c)
	}
	return f, nil
}

// rspCode returns the status code an rsp's data starts with.
func rspCode(data []byte) int {
	if len(data) < 3 || len(data) > 3 && data[3] != ' ' && data[3] != '\n' {
		return 0
	}
	n, err := strconv.Atoi(string(data[:3]))
	if err != nil {
		return 0
	}
	return n
}

// relpSession is an open RELP session on a connection.
type relpSession struct {
	conn net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
	txnr int // the last TXNR sent
	hdr  []byte
}

// next returns the next TXNR.
func (s *relpSession) next() int {
	s.txnr++
	if s.txnr > relpMaxTxnr {
		s.txnr = 1
	}
	return s.txnr
}

// writeFrame buffers one frame and returns its TXNR.
func (s *relpSession) writeFrame(cmd string, data []byte) (int, error) {
	t := s.next()
	s.hdr = strconv.AppendInt(s.hdr[:0], int64(t), 10)
	s.hdr = append(s.hdr, ' ')
	s.hdr = append(s.hdr, cmd...)
	s.hdr = append(s.hdr, ' ')
	s.hdr = strconv.AppendInt(s.hdr, int64(len(data)), 10)
	if len(data) > 0 {
		s.hdr = append(s.hdr, ' ')
	}
	if _, err := s.w.Write(s.hdr); err != nil {
		return t, err
	}
	if _, err := s.w.Write(data); err != nil {
		return t, err
	}
	return t, s.w.WriteByte('\n')
}

// openRELP opens a session on conn: the "open" command and its answer,
// within deadline and ctx.
func openRELP(ctx context.Context, conn net.Conn, deadline time.Time) (*relpSession, error) {
	s := &relpSession{conn: conn, r: bufio.NewReaderSize(conn, 4096), w: bufio.NewWriterSize(conn, 64<<10)}
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	conn.SetDeadline(deadline)
	defer conn.SetDeadline(time.Time{})
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	t, err := s.writeFrame("open", []byte(relpOffers))
	if err == nil {
		err = s.w.Flush()
	}
	if err != nil {
		return nil, fmt.Errorf("sending the RELP open command: %w", err)
	}
	f, err := readRELPFrame(s.r, relpMaxRspData)
	if err != nil {
		return nil, fmt.Errorf("reading the answer to the RELP open command: %w", err)
	}
	if f.cmd != "rsp" || f.txnr != t {
		return nil, fmt.Errorf("%w: the open command was answered %q (TXNR %d)", errRELPProtocol, f.cmd, f.txnr)
	}
	if code := rspCode(f.data); code != 200 {
		return nil, fmt.Errorf("the server refused the RELP session: %q", firstLine(f.data))
	}
	if !bytes.Contains(f.data, []byte("commands=syslog")) {
		return nil, fmt.Errorf("%w: the server does not offer the syslog command: %q", errRELPProtocol, f.data)
	}
	return s, nil
}

func firstLine(b []byte) string {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// relpInflight is a message awaiting its rsp.
type relpInflight struct{ txnr, line int }

// sendRELP sends every line of b as a RELP syslog frame, at most
// relpWindow awaiting their answers, and returns once every message is
// answered. Messages answered 200 are delivered; 500 (rsyslog could not
// take it: a full queue) sends the message again; any other answer rejects
// it (dead-lettered). write_timeout bounds a wait without progress. When the session breaks (a write or read
// fails, the server sends serverclose) the messages not yet answered are
// returned in an outputs.PartialError, and the agent sends just those
// again on a new session.
func (o *Output) sendRELP(ctx context.Context, b *outputs.Batch) error {
	if o.relp != nil && (o.relp.r.Buffered() > 0 || netx.Probe(o.relp.conn) != netx.Open) {
		// Closed, or a frame no request asked for (serverclose) waiting:
		// the session is over.
		o.log.Debug("RELP server ended the session; reconnecting", "address", o.cfg.address)
		o.dropRELP()
	}
	if o.relp == nil {
		if err := o.connectRELP(ctx); err != nil {
			return err
		}
	}
	s := o.relp
	conn := s.conn
	conn.SetDeadline(time.Now().Add(o.cfg.writeTimeout))
	interrupted := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		conn.SetDeadline(time.Unix(1, 0))
		close(interrupted)
	})
	defer func() {
		if !stop() {
			<-interrupted
		}
		if o.relp != nil {
			o.relp.conn.SetDeadline(time.Time{})
		}
	}()

	n := b.Len()
	o.rejected = o.rejected[:0]
	var refused error // the first rsp other than 200 or 5xx
	var retry []int   // lines answered 5xx
	var retryErr error
	progress := time.Now()
	done := make([]bool, n)
	inflight := o.inflight[:0]
	now := time.Now()
	next := 0
	var sessErr error
	// answer takes one frame from the server.
	answer := func() error {
		f, err := readRELPFrame(s.r, relpMaxRspData)
		if err != nil {
			return err
		}
		if f.cmd == "serverclose" {
			return errors.New("the server closed the RELP session (serverclose)")
		}
		k := slices.IndexFunc(inflight, func(m relpInflight) bool { return m.txnr == f.txnr })
		if f.cmd != "rsp" || k < 0 {
			return fmt.Errorf("%w: got %q for TXNR %d, which awaits no answer", errRELPProtocol, f.cmd, f.txnr)
		}
		i := inflight[k].line
		inflight = slices.Delete(inflight, k, k+1)
		switch code := rspCode(f.data); {
		case code == 200:
			done[i] = true
		case code >= 500:
			// librelp answers 500 when rsyslog could not take the
			// message (its queue full, say): sent again.
			retry = append(retry, i)
			if retryErr == nil {
				retryErr = fmt.Errorf("RELP server %s could not take a message: %q", o.cfg.address, firstLine(f.data))
			}
		default:
			done[i] = true
			o.rejected = append(o.rejected, i)
			if refused == nil {
				refused = fmt.Errorf("RELP server %s refused a message: %q", o.cfg.address, firstLine(f.data))
			}
		}
		// The deadline bounds a wait without progress, not the batch.
		if now := time.Now(); now.Sub(progress) > o.cfg.writeTimeout/8 {
			progress = now
			if ctx.Err() == nil {
				conn.SetDeadline(now.Add(o.cfg.writeTimeout))
			}
		}
		return nil
	}
	for sessErr == nil {
		// Refill the window after taking every answer already read, so
		// that frames go out in runs when answers come in runs. (Waiting
		// for half the window to be answered before refilling is slower:
		// the server's answers then wait for delayed ACKs.)
		if len(inflight) < o.cfg.relpWindow {
			for len(inflight) < o.cfg.relpWindow && next < n {
				i := next
				next++
				msg, ok := o.encode(b.Line(i), b.Event(i), now)
				if !ok {
					o.rejected = append(o.rejected, i)
					done[i] = true
					continue
				}
				t, err := s.writeFrame("syslog", msg)
				if err != nil {
					sessErr = err
					break
				}
				inflight = append(inflight, relpInflight{t, i})
			}
			if sessErr != nil {
				break
			}
			if err := s.w.Flush(); err != nil {
				sessErr = err
				break
			}
		}
		if len(inflight) == 0 {
			break // every message answered
		}
		if s.r.Buffered() == 0 {
			quickAck(conn)
		}
		sessErr = answer()
		// The answers already read are taken without waiting.
		for sessErr == nil && s.r.Buffered() > 0 && len(inflight) > 0 {
			sessErr = answer()
		}
	}
	o.inflight = inflight[:0]
	slices.Sort(o.rejected)
	if sessErr == nil && len(retry) > 0 {
		// The session is fine; the lines answered 5xx go again, with the
		// rejected ones (rejected again on the resend, then dead-lettered).
		again := append(slices.Clone(retry), o.rejected...)
		slices.Sort(again)
		if len(again) == n {
			return retryErr
		}
		return &outputs.PartialError{Lines: again, Err: retryErr}
	}
	if sessErr != nil {
		o.dropRELP()
		if ctx.Err() != nil {
			sessErr = ctx.Err()
		}
		err := fmt.Errorf("RELP session with %s broke: %w", o.cfg.address, sessErr)
		var again []int
		acked := false
		for i, d := range done {
			switch {
			case !d || slices.Contains(o.rejected, i) || slices.Contains(retry, i):
				again = append(again, i)
			default:
				acked = true
			}
		}
		if !acked {
			return err
		}
		return &outputs.PartialError{Lines: again, Err: err}
	}
	if len(o.rejected) > 0 {
		err := refused
		if err == nil {
			err = fmt.Errorf("syslog message larger than max_message_bytes (%d) even without requestObject and responseObject, not sent to %s", o.cfg.maxMsg, o.cfg.address)
		}
		return &outputs.RejectedError{Lines: slices.Clone(o.rejected), Err: err}
	}
	return nil
}

// connectRELP dials (TLS included) and opens a session.
func (o *Output) connectRELP(ctx context.Context) error {
	conn, err := o.dial(ctx)
	if o.dialed != nil {
		o.dialed(err)
	}
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return fmt.Errorf("cannot connect to RELP server %s: %w", o.cfg.address, err)
	}
	s, err := openRELP(ctx, conn, time.Now().Add(o.cfg.dialTimeout))
	if err != nil {
		conn.Close()
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return fmt.Errorf("cannot open a RELP session with %s: %w", o.cfg.address, err)
	}
	o.relp = s
	return nil
}

// dropRELP closes the session's connection without ceremony.
func (o *Output) dropRELP() {
	if o.relp == nil {
		return
	}
	o.conn = o.relp.conn
	o.drop()
	o.relp = nil
}

// closeRELP ends the session as the protocol says: "close", its rsp, and
// the server's serverclose (read and ignored), then closes the
// connection.
func (o *Output) closeRELP(ctx context.Context) error {
	s := o.relp
	o.relp = nil
	deadline := time.Now().Add(5 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	s.conn.SetDeadline(deadline)
	t, err := s.writeFrame("close", nil)
	if err == nil {
		err = s.w.Flush()
	}
	for err == nil {
		var f relpFrame
		f, err = readRELPFrame(s.r, relpMaxRspData)
		if err == nil && f.cmd == "rsp" && f.txnr == t {
			break
		}
	}
	if err != nil && !errors.Is(err, io.EOF) {
		o.log.Debug("RELP server did not answer the close command", "address", o.cfg.address, "err", err)
	}
	if cerr := s.conn.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) {
		return fmt.Errorf("cannot close the RELP session with %s: %w", o.cfg.address, cerr)
	}
	return nil
}
