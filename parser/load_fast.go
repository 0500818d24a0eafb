//go:build amd64 || arm64

package parser

import "unsafe"

// load64 returns the 8 bytes at s[i:i+8] as a little-endian word. The caller
// guarantees i+8 <= len(s). amd64 and arm64 allow unaligned loads.
func load64(s []byte, i int) uint64 {
	return *(*uint64)(unsafe.Add(unsafe.Pointer(unsafe.SliceData(s)), i))
}
