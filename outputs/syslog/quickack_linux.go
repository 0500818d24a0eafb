package syslog

import (
	"crypto/tls"
	"net"
	"syscall"
)

// quickAck asks Linux to acknowledge what arrives next at once, not after
// the delayed-ACK timer (up to 40 ms). A RELP server that sends its small
// "rsp" frames with Nagle's algorithm on waits for that ACK before it
// sends the next ones: without this, every wait for the last answers of a
// batch cost a delayed ACK. The flag does not stick, so it is set before
// each wait.
func quickAck(c net.Conn) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	tcp, ok := c.(*net.TCPConn)
	if !ok {
		return
	}
	raw, err := tcp.SyscallConn()
	if err != nil {
		return
	}
	raw.Control(func(fd uintptr) {
		syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1)
	})
}
