//go:build unix

package netx

import (
	"errors"
	"net"
	"syscall"
)

// peek looks at the socket under c without blocking and without consuming.
func peek(c net.Conn) peekResult {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return peekUnknown
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return peekClosed
	}
	result := peekEmpty
	var buf [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR):
			result = peekEmpty
		case err != nil: // ECONNRESET and the like
			result = peekClosed
		case n == 0: // orderly shutdown by the peer
			result = peekClosed
		default:
			result = peekPending
		}
		return true // never wait
	})
	if err != nil {
		return peekClosed
	}
	return result
}
