// Package netx holds what the network outputs share about their
// connections: one liveness probe for an idle connection, for TCP, unix
// sockets and TLS over either.
package netx

import (
	"crypto/tls"
	"errors"
	"net"
	"os"
	"time"
)

// State is what Probe found on an idle connection.
type State int

const (
	// Open: nothing to read, or only TLS records that carry no data
	// (session tickets, key updates): the connection can be reused.
	Open State = iota
	// Closed: the peer closed or reset the connection (for TLS, also a
	// close_notify or another alert).
	Closed
	// Data: the peer sent application data, which Probe read and
	// discarded. The connection is open, but a request/response protocol
	// (fluentd's acks) is no longer in step on it.
	Data
)

func (s State) String() string {
	switch s {
	case Open:
		return "open"
	case Closed:
		return "closed"
	case Data:
		return "data"
	}
	return "unknown"
}

// DrainWait bounds how long Probe reads when bytes are pending: long
// enough for the rest of a TLS record already on its way, short enough not
// to matter (it is only spent when the peer sent something).
const DrainWait = 5 * time.Millisecond

// Probe reports whether the peer of an idle connection has closed it,
// without waiting when nothing is pending: a non-blocking MSG_PEEK at the
// socket (TCP or unix) under c, which consumes nothing. Only when bytes are
// pending does it read them, through c, for at most DrainWait: under TLS
// they are records that only the TLS layer can tell apart (a session
// ticket, a close_notify alert, data); reading the socket under a tls.Conn
// directly would tear its stream. Where peeking is not possible it reads
// for DrainWait every time.
//
// Probe sees only the socket: bytes that a reader above c (a bufio.Reader)
// or a tls.Conn already buffered are the caller's to check. Probe clears
// c's read deadline first (an expired deadline left by the last exchange
// must not make an open connection look closed) and leaves none set.
func Probe(c net.Conn) State {
	if err := c.SetReadDeadline(time.Time{}); err != nil {
		return Closed
	}
	raw := c
	if tc, ok := c.(*tls.Conn); ok {
		raw = tc.NetConn()
	}
	switch peek(raw) {
	case peekEmpty:
		return Open
	case peekClosed:
		return Closed
	}
	return drain(c)
}

// drain reads c for at most DrainWait and says what it found.
func drain(c net.Conn) State {
	defer c.SetReadDeadline(time.Time{})
	if err := c.SetReadDeadline(time.Now().Add(DrainWait)); err != nil {
		return Closed
	}
	state := Open
	var buf [512]byte
	for {
		n, err := c.Read(buf[:])
		if n > 0 {
			state = Data
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return state
		}
		if err != nil {
			return Closed
		}
	}
}

type peekResult int

const (
	peekEmpty   peekResult = iota // nothing to read
	peekClosed                    // EOF or an error: the peer is gone
	peekPending                   // bytes to read
	peekUnknown                   // cannot peek here: read to find out
)
