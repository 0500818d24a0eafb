package parser

import (
	"math/rand/v2"
	"testing"
)

func naiveSpecial(w uint64) int {
	for k := 0; k < 8; k++ {
		c := byte(w >> (8 * k))
		if c == '"' || c == '\\' || c < 0x20 {
			return k
		}
	}
	return 8
}

func TestStrSpecialFindsTheFirstSpecialByte(t *testing.T) {
	check := func(w uint64) {
		got := 8
		if m := strSpecial(w); m != 0 {
			got = trailingByte(m)
		}
		if want := naiveSpecial(w); got != want {
			t.Fatalf("strSpecial(%#016x): first special byte %d, want %d", w, got, want)
		}
	}
	// Every byte value in every position, among plain and among special
	// neighbours.
	for _, fill := range []byte{'a', 0xff, 0x80, 0x21, 0x23, 0x20, '"', '\\', 0x00, 0x1f, 0x5b, 0x5d} {
		for pos := 0; pos < 8; pos++ {
			for c := 0; c < 256; c++ {
				var w uint64
				for k := 0; k < 8; k++ {
					b := uint64(fill)
					if k == pos {
						b = uint64(c)
					}
					w |= b << (8 * k)
				}
				check(w)
			}
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 1_000_000; i++ {
		check(r.Uint64())
	}
}

func trailingByte(m uint64) int {
	for k := 0; k < 8; k++ {
		if m>>(8*k+7)&1 != 0 {
			return k
		}
	}
	return 8
}
