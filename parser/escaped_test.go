package parser

import "testing"

func TestEscapedBits(t *testing.T) {
	for _, c := range []struct {
		line string
		want uint8
	}{
		{`{"verb":"get","user":{"username":"alice"},"requestURI":"/api?a=1&b=2","objectRef":{"resource":"pods"}}`, 0},
		{`{"requestURI":"/api?a=1\u0026b=2"}`, EscapedRequestURI},
		{`{"verb":"g\u0065t"}`, EscapedVerb},
		{`{"user":{"username":"al\u0040ice","groups":["a\"b"]}}`, EscapedUsername},
		{`{"impersonatedUser":{"username":"b\/c"}}`, EscapedOther},
		{`{"objectRef":{"name":"a\tb"}}`, EscapedObjectRef},
		{`{"objectRef":{"apiGroup":"\u0061pps"},"userAgent":"x\\y"}`, EscapedObjectRef | EscapedOther},
		// Escapes in the raw members (annotations, objects) are not the
		// string fields': they have no bit.
		{`{"annotations":{"k":"v\n"},"requestObject":{"a":"\u0000"},"sourceIPs":["\u0031"]}`, 0},
	} {
		var ev Event
		if err := Scan([]byte(c.line), &ev); err != nil {
			t.Fatalf("%s: %v", c.line, err)
		}
		if ev.Escaped != c.want {
			t.Errorf("%s: Escaped %05b, want %05b", c.line, ev.Escaped, c.want)
		}
	}
}
