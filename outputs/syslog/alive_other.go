//go:build !linux

package syslog

// alive reports whether the receiver has not closed the connection. It
// waits a few milliseconds for an EOF (see drain).
func (o *Output) alive() bool { return o.drain() }
