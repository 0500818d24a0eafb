//go:build unix

package fluentd

import (
	"crypto/tls"
	"errors"
	"net"
	"syscall"
)

// alive reports whether the peer has not closed c, by peeking at the
// socket without blocking: a receiver that restarted or timed out an idle
// connection has sent a FIN (or RST), and writing the next batch into it
// would only fail later, at the ack.
func alive(c net.Conn) bool {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	ok = true
	var buf [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case n == 0 && err == nil: // orderly shutdown by the peer
			ok = false
		case err != nil && !errors.Is(err, syscall.EAGAIN) && !errors.Is(err, syscall.EINTR):
			ok = false
		}
		// Pending bytes (a TLS session ticket, say) mean the peer is there.
		return true
	})
	return ok && err == nil
}
