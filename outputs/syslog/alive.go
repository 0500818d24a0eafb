package syslog

import (
	"crypto/tls"
	"errors"
	"net"
	"os"
	"time"
)

// drain reads what the receiver sent on the connection (a syslog receiver
// sends nothing, but a TLS one may send session tickets or a close_notify
// alert), for at most a few milliseconds, and reports whether the connection
// is still open.
func (o *Output) drain() bool {
	var conn net.Conn = o.conn
	defer conn.SetReadDeadline(time.Time{})
	if err := conn.SetReadDeadline(time.Now().Add(5 * time.Millisecond)); err != nil {
		return false
	}
	var buf [512]byte
	for {
		_, err := conn.Read(buf[:])
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return true
		}
		if err != nil {
			return false
		}
	}
}

// rawConn returns the TCP connection under o.conn.
func (o *Output) rawConn() net.Conn {
	if tc, ok := o.conn.(*tls.Conn); ok {
		return tc.NetConn()
	}
	return o.conn
}
