//go:build !(amd64 || arm64)

package parser

import "encoding/binary"

// load64 returns the 8 bytes at s[i:i+8] as a little-endian word. The caller
// guarantees i+8 <= len(s).
func load64(s []byte, i int) uint64 {
	return binary.LittleEndian.Uint64(s[i : i+8])
}
