package syslog

import (
	"syscall"
)

// alive reports whether the receiver has not closed the connection: a
// non-blocking peek at the socket sees EOF or an error (a reset) when it
// has. It costs one system call and never waits, unless the receiver sent
// data (see drain).
func (o *Output) alive() bool {
	sc, ok := o.rawConn().(syscall.Conn)
	if !ok {
		return o.drain()
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var n int
	var rerr error
	buf := o.peek[:]
	if err := rc.Read(func(fd uintptr) bool {
		n, _, rerr = syscall.Recvfrom(int(fd), buf, syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return true
	}); err != nil {
		return false
	}
	switch {
	case rerr == syscall.EAGAIN || rerr == syscall.EINTR:
		return true // nothing to read: open
	case rerr != nil:
		return false // ECONNRESET and the like
	case n == 0:
		return false // EOF: the receiver closed its side
	}
	return o.drain()
}
