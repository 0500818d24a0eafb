package parser

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

type edgeCase struct {
	name    string
	in      string
	wantErr error // nil: Scan must succeed
	errAt   int   // expected SyntaxError.Offset when wantErr != nil (-1: any)
	check   func(t *testing.T, ev *Event, line []byte)
	msgHas  string // the error message must contain this
	noMatch bool   // not fed to the fuzz seeds (too big)
}

func unq(t *testing.T, raw []byte) string {
	t.Helper()
	u, err := Unquote(nil, raw)
	if err != nil {
		t.Fatalf("Unquote(%q): %v", raw, err)
	}
	return string(u)
}

func wantStr(t *testing.T, name string, raw []byte, want string) {
	t.Helper()
	if raw == nil {
		t.Errorf("%s: nil, want %q", name, want)
		return
	}
	if got := unq(t, raw); got != want {
		t.Errorf("%s = %q, want %q", name, got, want)
	}
}

const minimal = `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a1","stage":"ResponseComplete","requestURI":"/api/v1/pods","verb":"list","user":{"username":"alice","groups":["g1","g2"]},"sourceIPs":["10.0.0.1"],"userAgent":"kubectl","objectRef":{"resource":"pods","namespace":"default","name":"p","apiGroup":"","apiVersion":"v1","subresource":"log"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2024-01-01T00:00:00.000000Z","stageTimestamp":"2024-01-01T00:00:00.100000Z","annotations":{"a":"b"}}`

func deep(n int) string {
	return `{"kind":"Event","requestObject":` + strings.Repeat("[", n-1) + strings.Repeat("]", n-1) + `}`
}

func edgeCases() []edgeCase {
	esc := `{"kind":"Ev\u00e9nt \ud83d\ude00","apiVersion":"a\/b\\c","level":"L\tx","auditID":"\u2028\u2029","stage":"S\"q\"","requestURI":"/api?x=\u0026y","verb":"g\u0065t","user":{"username":"\u00fc\u00df\u6f22","groups":["\ud800"]},"impersonatedUser":{"username":"b\nob"},"sourceIPs":["::1"],"userAgent":"ü\u200b","objectRef":{"resource":"r\b","namespace":"n\f","name":"n\r","apiGroup":"\u0000","apiVersion":"v\u0031","subresource":"\ud83d"},"requestReceivedTimestamp":"t\u0031","stageTimestamp":"t\u0032"}`
	return []edgeCase{
		{name: "a minimal complete event", in: minimal + "\n", check: func(t *testing.T, ev *Event, line []byte) {
			wantStr(t, "Kind", ev.Kind, "Event")
			wantStr(t, "Verb", ev.Verb, "list")
			wantStr(t, "Username", ev.Username, "alice")
			wantStr(t, "ObjectRef.Subresource", ev.ObjectRef.Subresource, "log")
			if ev.ObjectRef.APIGroup == nil || len(ev.ObjectRef.APIGroup) != 0 {
				t.Errorf("empty apiGroup should be non-nil and empty, got %q", ev.ObjectRef.APIGroup)
			}
			if string(ev.UserGroups) != `["g1","g2"]` || string(ev.SourceIPs) != `["10.0.0.1"]` || string(ev.Annotations) != `{"a":"b"}` {
				t.Errorf("raw fields: %s %s %s", ev.UserGroups, ev.SourceIPs, ev.Annotations)
			}
			if ev.ResponseCode != 200 {
				t.Errorf("ResponseCode = %d", ev.ResponseCode)
			}
			if ev.RequestObject.Present() || ev.ResponseObject.Present() {
				t.Error("absent objects have spans")
			}
		}},
		{name: "escapes and unicode in every string field", in: esc, check: func(t *testing.T, ev *Event, line []byte) {
			wantStr(t, "Kind", ev.Kind, "Evént 😀")
			wantStr(t, "APIVersion", ev.APIVersion, `a/b\c`)
			wantStr(t, "Level", ev.Level, "L\tx")
			wantStr(t, "AuditID", ev.AuditID, "\u2028\u2029")
			wantStr(t, "Stage", ev.Stage, `S"q"`)
			wantStr(t, "RequestURI", ev.RequestURI, "/api?x=&y")
			wantStr(t, "Verb", ev.Verb, "get")
			wantStr(t, "Username", ev.Username, "üß漢")
			wantStr(t, "ImpersonatedUsername", ev.ImpersonatedUsername, "b\nob")
			wantStr(t, "UserAgent", ev.UserAgent, "ü\u200b")
			wantStr(t, "ObjectRef.Resource", ev.ObjectRef.Resource, "r\b")
			wantStr(t, "ObjectRef.Namespace", ev.ObjectRef.Namespace, "n\f")
			wantStr(t, "ObjectRef.Name", ev.ObjectRef.Name, "n\r")
			wantStr(t, "ObjectRef.APIGroup", ev.ObjectRef.APIGroup, "\x00")
			wantStr(t, "ObjectRef.APIVersion", ev.ObjectRef.APIVersion, "v1")
			wantStr(t, "ObjectRef.Subresource", ev.ObjectRef.Subresource, "\uFFFD")
			wantStr(t, "RequestReceivedTimestamp", ev.RequestReceivedTimestamp, "t1")
			wantStr(t, "StageTimestamp", ev.StageTimestamp, "t2")
		}},
		{name: "raw U+2028 and invalid UTF-8 inside strings are accepted", in: "{\"kind\":\"a\u2028b\",\"verb\":\"x\xffy\xc3\"}", check: func(t *testing.T, ev *Event, line []byte) {
			wantStr(t, "Kind", ev.Kind, "a\u2028b")
			wantStr(t, "Verb", ev.Verb, "x\uFFFDy\uFFFD")
		}},
		{name: "escaped keys match after decoding", in: `{"k\u0069nd":"Event","\u0075ser":{"user\u006eame":"x"}}`, check: func(t *testing.T, ev *Event, line []byte) {
			wantStr(t, "Kind", ev.Kind, "Event")
			wantStr(t, "Username", ev.Username, "x")
		}},
		{name: "keys are case-sensitive", in: `{"Kind":"Event","User":{"Username":"x"}}`, check: func(t *testing.T, ev *Event, line []byte) {
			if ev.Kind != nil || ev.Username != nil {
				t.Errorf("PascalCase keys matched: %q %q", ev.Kind, ev.Username)
			}
		}},
		{name: "keys in reverse order with whitespace everywhere", in: " \t{ \"annotations\" : { } ,\n\"responseStatus\" : { \"code\" : 404 } , \"user\" : { \"groups\" : [ ] , \"username\" : \"u\" } , \"kind\" : \"Event\" }\r\n", check: func(t *testing.T, ev *Event, line []byte) {
			wantStr(t, "Kind", ev.Kind, "Event")
			wantStr(t, "Username", ev.Username, "u")
			if ev.ResponseCode != 404 || string(ev.UserGroups) != "[ ]" || string(ev.Annotations) != "{ }" {
				t.Errorf("got code %d groups %q annotations %q", ev.ResponseCode, ev.UserGroups, ev.Annotations)
			}
		}},
		{name: "duplicate keys: the last wins and a repeated object replaces the first", in: `{"kind":"A","kind":"B","user":{"username":"u1","groups":["g"]},"user":{"uid":"x"},"verb":"get","verb":null}`, check: func(t *testing.T, ev *Event, line []byte) {
			wantStr(t, "Kind", ev.Kind, "B")
			if ev.Username != nil || ev.UserGroups != nil || ev.Verb != nil {
				t.Errorf("earlier values survived: %q %q %q", ev.Username, ev.UserGroups, ev.Verb)
			}
		}},
		{name: "wrong types leave fields unset", in: `{"kind":0,"user":"alice","sourceIPs":{},"annotations":[],"responseStatus":{"code":"200"},"verb":["get"]}`, check: func(t *testing.T, ev *Event, line []byte) {
			if ev.Kind != nil || ev.Username != nil || ev.SourceIPs != nil || ev.Annotations != nil || ev.ResponseCode != 0 || ev.Verb != nil {
				t.Errorf("wrong-typed values were taken: %+v", ev)
			}
		}},
		{name: "non-integer and huge codes read as 0", in: `{"responseStatus":{"code":200.0}}`, check: func(t *testing.T, ev *Event, line []byte) {
			if ev.ResponseCode != 0 {
				t.Errorf("ResponseCode = %d", ev.ResponseCode)
			}
		}},
		{name: "a code beyond int32 reads as 0", in: `{"responseStatus":{"code":2147483648}}`, check: func(t *testing.T, ev *Event, line []byte) {
			if ev.ResponseCode != 0 {
				t.Errorf("ResponseCode = %d", ev.ResponseCode)
			}
		}},
		{name: "the largest int32 code is kept", in: `{"responseStatus":{"code":2147483647}}`, check: func(t *testing.T, ev *Event, line []byte) {
			if ev.ResponseCode != 2147483647 {
				t.Errorf("ResponseCode = %d", ev.ResponseCode)
			}
		}},
		{name: "a negative code is kept", in: `{"responseStatus":{"code":-1}}`, check: func(t *testing.T, ev *Event, line []byte) {
			if ev.ResponseCode != -1 {
				t.Errorf("ResponseCode = %d", ev.ResponseCode)
			}
		}},
		{name: "empty object", in: `{}`},
		{name: "empty object with whitespace", in: " { }\n"},
		{name: "missing optional fields", in: `{"kind":"Event","level":"Metadata","auditID":"x","stage":"RequestReceived","requestURI":"/healthz","verb":"get","user":{"username":"system:anonymous"}}`, check: func(t *testing.T, ev *Event, line []byte) {
			if !zeroRef(ev.ObjectRef) || ev.ResponseCode != 0 || ev.SourceIPs != nil || ev.Annotations != nil || ev.ImpersonatedUsername != nil || ev.UserGroups != nil {
				t.Errorf("absent fields set: %+v", ev)
			}
		}},
		{name: "request and response object spans cover the value", in: `{"requestObject":{"a":[1,2,{"b":null}]},"responseObject":"x","kind":"E"}`, check: func(t *testing.T, ev *Event, line []byte) {
			if string(ev.RequestObject.Value(line)) != `{"a":[1,2,{"b":null}]}` || string(ev.ResponseObject.Value(line)) != `"x"` {
				t.Errorf("spans %q %q", ev.RequestObject.Value(line), ev.ResponseObject.Value(line))
			}
			if string(line[ev.RequestObject.Key:ev.RequestObject.End]) != `"requestObject":{"a":[1,2,{"b":null}]}` {
				t.Errorf("member span %q", line[ev.RequestObject.Key:ev.RequestObject.End])
			}
		}},
		{name: "numbers of every shape are skipped", in: `{"a":[0,-0,1.5,-1.5e10,2E-3,1e+2,123456789012345678901234567890]}`},
		{name: "nesting at the maximum depth is accepted", in: deep(MaxDepth), noMatch: true},
		{name: "nesting beyond the maximum depth is rejected", in: deep(MaxDepth + 1), wantErr: ErrTooDeep, errAt: -1, noMatch: true},
		{name: "moderate nesting beyond the fast stack", in: deep(300)},
		{name: "a 5 MB requestObject", in: big5MB(), noMatch: true, check: func(t *testing.T, ev *Event, line []byte) {
			if ev.RequestObject.End-ev.RequestObject.Start < 5<<20 {
				t.Errorf("requestObject span %d bytes", ev.RequestObject.End-ev.RequestObject.Start)
			}
			wantStr(t, "Verb", ev.Verb, "create")
		}},

		{name: "a truncated line", in: minimal[:len(minimal)/2], wantErr: ErrTruncated, errAt: len(minimal) / 2},
		{name: "a line cut inside an escape", in: `{"kind":"a\u00`, wantErr: ErrTruncated, errAt: 14},
		{name: "a line cut after a key", in: `{"kind"`, wantErr: ErrTruncated, errAt: 7},
		{name: "a line cut in a literal", in: `{"a":tr`, wantErr: ErrTruncated, errAt: 7},
		{name: "a legacy-format line", in: `2017-09-11T19:55:05.123Z AUDIT: id="5b4f2e6e-6a3f-4b5e-9a38-0a7c6cbd2c7e" stage="ResponseComplete" ip="127.0.0.1" method="get" user="admin" groups="\"system:masters\",\"system:authenticated\"" as="<self>" asgroups="<lookup>" namespace="default" uri="/api/v1/pods" response="200"` + "\n", wantErr: ErrLegacyFormat, errAt: 0, msgHas: "--audit-log-format=json"},
		{name: "trailing garbage", in: minimal + ` x`, wantErr: ErrSyntax, errAt: len(minimal) + 1},
		{name: "two objects on one line", in: `{}{}`, wantErr: ErrSyntax, errAt: 2},
		{name: "a UTF-8 BOM", in: "\xef\xbb\xbf" + minimal, wantErr: ErrBOM, errAt: 0, msgHas: "byte order mark"},
		{name: "an invalid escape", in: `{"kind":"a\x"}`, wantErr: ErrSyntax, errAt: 10, msgHas: "invalid escape at byte 10"},
		{name: "a bad unicode escape", in: `{"kind":"a\u12g4"}`, wantErr: ErrSyntax, errAt: 10},
		{name: "a raw tab in a string", in: "{\"kind\":\"a\tb\"}", wantErr: ErrSyntax, errAt: 10, msgHas: "control character"},
		{name: "a leading zero", in: `{"a":01}`, wantErr: ErrSyntax, errAt: 6},
		{name: "a bare minus", in: `{"a":-}`, wantErr: ErrSyntax, errAt: 6},
		{name: "a trailing comma", in: `{"a":1,}`, wantErr: ErrSyntax, errAt: 7},
		{name: "single quotes", in: `{'a':1}`, wantErr: ErrSyntax, errAt: 1},
		{name: "a missing colon", in: `{"a" 1}`, wantErr: ErrSyntax, errAt: 5},
		{name: "unbalanced brackets", in: `{"a":[1}`, wantErr: ErrSyntax, errAt: 7},
		{name: "an array is not an object", in: `[{"kind":"Event"}]`, wantErr: ErrNotObject, errAt: 0},
		{name: "a lone line of a pretty-printed file is not an object", in: `    "system:authenticated"` + "\n", wantErr: ErrNotObject, errAt: 4},
		{name: "an empty line", in: "\n", wantErr: ErrNotObject, errAt: 1},
		{name: "a NUL after the object", in: "{}\x00", wantErr: ErrSyntax, errAt: 2},
	}
}

func big5MB() string {
	var b strings.Builder
	b.WriteString(`{"kind":"Event","requestObject":{"data":{`)
	for i := 0; b.Len() < 5<<20+100; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`"key`)
		b.WriteString(strings.Repeat("x", i%7))
		b.WriteString(`":"value with \"escapes\" \u00e9 and ünïcode and numbers",`)
		b.WriteString(`"n":[1,2.5,-3e4,true,false,null]`)
	}
	b.WriteString(`}},"verb":"create"}`)
	return b.String()
}

func TestScanEdgeCases(t *testing.T) {
	for _, c := range edgeCases() {
		t.Run(c.name, func(t *testing.T) {
			line := []byte(c.in)
			var ev Event
			err := Scan(line, &ev)
			if c.wantErr == nil {
				if err != nil {
					t.Fatalf("Scan: %v", err)
				}
				if c.check != nil {
					c.check(t, &ev, line)
				}
			} else {
				if !errors.Is(err, c.wantErr) {
					t.Fatalf("Scan error %v, want %v", err, c.wantErr)
				}
				var se *SyntaxError
				if !errors.As(err, &se) {
					t.Fatalf("error %T is not a *SyntaxError", err)
				}
				if c.errAt >= 0 && se.Offset != c.errAt {
					t.Errorf("error %q at offset %d, want %d", err, se.Offset, c.errAt)
				}
				if !strings.Contains(err.Error(), c.msgHas) || !strings.HasPrefix(err.Error(), "parser: ") {
					t.Errorf("error %q should start with \"parser: \" and contain %q", err, c.msgHas)
				}
			}
			if bad := diffScan(line); bad != nil {
				t.Errorf("disagrees with encoding/json:\n  %s", strings.Join(bad, "\n  "))
			}
		})
	}
}

func TestScanResetsTheEvent(t *testing.T) {
	var ev Event
	if err := Scan([]byte(minimal), &ev); err != nil {
		t.Fatal(err)
	}
	if err := Scan([]byte(`{"verb":"get"}`), &ev); err != nil {
		t.Fatal(err)
	}
	want := Event{Verb: []byte("get")}
	if !bytes.Equal(ev.Verb, want.Verb) || ev.Kind != nil || ev.Username != nil || ev.ResponseCode != 0 || ev.Annotations != nil || !zeroRef(ev.ObjectRef) {
		t.Errorf("fields of the previous line survived: %+v", ev)
	}
}

func zeroRef(r ObjectRef) bool {
	return r.Resource == nil && r.Namespace == nil && r.Name == nil && r.APIGroup == nil && r.APIVersion == nil && r.Subresource == nil
}

// mixedNest returns n levels alternating objects and arrays around a
// scalar, optionally with the closer at level bad (counted from the inside)
// swapped for the wrong one.
func mixedNest(n, bad int) string {
	var open, close strings.Builder
	open.WriteString(`{"requestObject":`)
	for k := 1; k < n; k++ {
		if k%3 == 0 {
			open.WriteString(`[1,`)
		} else {
			open.WriteString(`{"k":`)
		}
	}
	for k := n - 1; k >= 1; k-- {
		c := "}"
		if k%3 == 0 {
			c = "]"
		}
		if n-k == bad {
			if c == "}" {
				c = "]"
			} else {
				c = "}"
			}
		}
		close.WriteString(c)
	}
	return open.String() + "0" + close.String() + "}"
}

func TestScanTracksDeepMixedNesting(t *testing.T) {
	for _, n := range []int{2, 63, 64, 65, 66, 127, 128, 129, 200, 1000, MaxDepth} {
		for _, bad := range []int{0, 1, 63, 64, 65, 130, n - 2} {
			in := []byte(mixedNest(n, bad))
			var ev Event
			err := Scan(in, &ev)
			_, ok := jsonObject(in)
			if ok != (err == nil) {
				t.Errorf("depth %d, wrong closer at %d: Scan error %v, encoding/json accepts: %v", n, bad, err, ok)
			}
			if msg := diffMsgpack(in); msg != "" {
				t.Errorf("depth %d, wrong closer at %d: msgpack: %s", n, bad, msg)
			}
		}
	}
	if err := Scan([]byte(mixedNest(MaxDepth+1, 0)), new(Event)); !errors.Is(err, ErrTooDeep) {
		t.Errorf("depth %d: %v, want ErrTooDeep", MaxDepth+1, err)
	}
}

func TestEveryPrefixOfAnEventIsTruncated(t *testing.T) {
	lines := []string{minimal, edgeCases()[1].in, `{"a":[1.5e-3,true,false,null,{"b":"\ud83d\ude00"}],"n":-0}`}
	for _, line := range lines {
		for n := 1; n < len(line); n++ {
			in := []byte(line[:n])
			if err := Scan(in, new(Event)); !errors.Is(err, ErrTruncated) {
				t.Fatalf("Scan(%q): %v, want ErrTruncated", in, err)
			}
			if _, err := AppendMsgpack(nil, in); !errors.Is(err, ErrTruncated) {
				t.Fatalf("AppendMsgpack(%q): %v, want ErrTruncated", in, err)
			}
			if err := SplitEventList(in, func([]byte) error { return nil }); !errors.Is(err, ErrTruncated) {
				t.Fatalf("SplitEventList(%q): %v, want ErrTruncated", in, err)
			}
		}
	}
}
