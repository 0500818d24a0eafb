//go:build !unix

package netx

import "net"

func peek(net.Conn) peekResult { return peekUnknown }
