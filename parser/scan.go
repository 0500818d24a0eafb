// Package parser reads Kubernetes audit events (audit.k8s.io Event objects,
// one JSON object per line) without copying or allocating.
//
// Scan validates a whole line as JSON and fills a caller-owned Event with
// views into the line; Unquote decodes a string view on demand;
// SplitEventList cuts a webhook EventList body into its items; AppendMsgpack
// transcodes a line to msgpack for Fluentd. Event.Check (Event.CheckItem for
// EventList items) tells an audit event from any other JSON object, and
// ParseTime reads its timestamps.
//
// Keys are matched exactly (case-sensitively), as Kubernetes' own decoder
// sigs.k8s.io/json does; encoding/json's case-insensitive matching into
// structs is not reproduced. A field whose JSON value has the wrong type
// (for example "verb":7 or "user":null) is left unset, as if absent.
// Duplicate keys: the last one wins, as with encoding/json, and a repeated
// object such as "user" replaces the earlier one entirely (map semantics).
package parser

// Event holds views of one audit event's fields.
//
// String fields hold the raw JSON string between its quotes, escapes not
// decoded (use Unquote); they are nil when the key is absent or its value is
// not a string, and non-nil but empty for "". Raw fields (UserGroups,
// SourceIPs, Annotations) hold the whole JSON value, brackets included, when
// it has the expected type (array, array, object), else nil.
//
// All slices point into the line given to Scan: like bufio.Scanner.Bytes,
// they are valid only until the caller overwrites or reuses that buffer.
type Event struct {
	Kind                 []byte
	APIVersion           []byte
	Level                []byte
	AuditID              []byte
	Stage                []byte
	RequestURI           []byte
	Verb                 []byte
	Username             []byte // user.username
	UserUID              []byte // user.uid
	UserGroups           []byte // user.groups, raw JSON array
	ImpersonatedUsername []byte // impersonatedUser.username
	SourceIPs            []byte // raw JSON array
	UserAgent            []byte
	ObjectRef            ObjectRef
	// ResponseCode is responseStatus.code when it is a JSON integer literal
	// (no fraction or exponent) that fits in an int32, as in
	// metav1.Status.Code; otherwise (absent, null, 200.0, 1e2, too big) 0.
	ResponseCode             int
	RequestReceivedTimestamp []byte
	StageTimestamp           []byte
	Annotations              []byte // raw JSON object
	RequestObject            Span   // requestObject, any JSON value
	ResponseObject           Span   // responseObject, any JSON value
	// Escaped has a bit (EscapedVerb, ...) set for each string field
	// above that holds a JSON escape, whose raw bytes are then not its
	// value: Unquote it before comparing. Without its bit, a field's bytes
	// are its value (unless they are not valid UTF-8, which encoding/json
	// would replace with U+FFFD and kube-apiserver never writes).
	Escaped uint8
}

// Bits of Event.Escaped.
const (
	EscapedRequestURI uint8 = 1 << iota
	EscapedVerb
	EscapedUsername  // user.username
	EscapedObjectRef // any of objectRef's fields
	EscapedOther     // any other string field
)

// escapedBit returns the Event.Escaped bit of field f of object obj
// (fNone: the top level).
func escapedBit(obj, f int) uint8 {
	switch {
	case obj == fNone && f == fRequestURI:
		return EscapedRequestURI
	case obj == fNone && f == fVerb:
		return EscapedVerb
	case obj == fUser && f == fUsername:
		return EscapedUsername
	case obj == fObjectRef:
		return EscapedObjectRef
	}
	return EscapedOther
}

// ObjectRef holds views of the objectRef fields.
type ObjectRef struct {
	Resource    []byte
	Namespace   []byte
	Name        []byte
	APIGroup    []byte
	APIVersion  []byte
	Subresource []byte
}

// Span locates a member of the top-level object in the line: line[Key:End]
// is `"key": value` and line[Start:End] is the value. All are 0 when the key
// is absent.
type Span struct {
	Key, Start, End int
}

// Present reports whether the member was in the line.
func (s Span) Present() bool { return s.End != 0 }

// Value returns the raw JSON value in line, or nil when absent.
func (s Span) Value(line []byte) []byte {
	if s.End == 0 {
		return nil
	}
	return line[s.Start:s.End]
}

// Field numbers returned by the key matchers.
const (
	fNone = iota
	fKind
	fAPIVersion
	fLevel
	fAuditID
	fStage
	fRequestURI
	fVerb
	fUser
	fImpersonatedUser
	fSourceIPs
	fUserAgent
	fObjectRef
	fResponseStatus
	fRequestObject
	fResponseObject
	fRequestReceivedTimestamp
	fStageTimestamp
	fAnnotations
	// Fields of nested objects.
	fUsername
	fUID
	fGroups
	fResource
	fNamespace
	fName
	fAPIGroup
	fSubresource
	fCode
)

func topField(k []byte) int {
	switch len(k) {
	case 4:
		switch string(k) {
		case "kind":
			return fKind
		case "verb":
			return fVerb
		case "user":
			return fUser
		}
	case 5:
		switch string(k) {
		case "level":
			return fLevel
		case "stage":
			return fStage
		}
	case 7:
		if string(k) == "auditID" {
			return fAuditID
		}
	case 9:
		switch string(k) {
		case "sourceIPs":
			return fSourceIPs
		case "userAgent":
			return fUserAgent
		case "objectRef":
			return fObjectRef
		}
	case 10:
		switch string(k) {
		case "apiVersion":
			return fAPIVersion
		case "requestURI":
			return fRequestURI
		}
	case 11:
		if string(k) == "annotations" {
			return fAnnotations
		}
	case 13:
		if string(k) == "requestObject" {
			return fRequestObject
		}
	case 14:
		switch string(k) {
		case "responseStatus":
			return fResponseStatus
		case "responseObject":
			return fResponseObject
		case "stageTimestamp":
			return fStageTimestamp
		}
	case 16:
		if string(k) == "impersonatedUser" {
			return fImpersonatedUser
		}
	case 24:
		if string(k) == "requestReceivedTimestamp" {
			return fRequestReceivedTimestamp
		}
	}
	return fNone
}

func subField(obj int, k []byte) int {
	switch obj {
	case fUser:
		switch string(k) {
		case "username":
			return fUsername
		case "uid":
			return fUID
		case "groups":
			return fGroups
		}
	case fImpersonatedUser:
		if string(k) == "username" {
			return fUsername
		}
	case fObjectRef:
		switch string(k) {
		case "resource":
			return fResource
		case "namespace":
			return fNamespace
		case "name":
			return fName
		case "apiGroup":
			return fAPIGroup
		case "apiVersion":
			return fAPIVersion
		case "subresource":
			return fSubresource
		}
	case fResponseStatus:
		if string(k) == "code" {
			return fCode
		}
	}
	return fNone
}

// Scan validates line as exactly one JSON object, optionally surrounded by
// whitespace (so a trailing "\n" or "\r\n" is fine), and fills ev with views
// of its audit fields. ev is reset first. It does not allocate.
//
// On error ev holds whatever was filled before the error and must not be
// used; the error is a *SyntaxError wrapping ErrNotObject, ErrTruncated,
// ErrLegacyFormat, ErrBOM, ErrTooDeep or ErrSyntax.
func Scan(line []byte, ev *Event) error {
	*ev = Event{}
	i, code := scanTop(line, ev)
	if code != cOK {
		return makeError(line, i, code)
	}
	return nil
}

func scanTop(s []byte, ev *Event) (int, int) {
	i := 0
	if len(s) == 0 || s[0] != '{' {
		i = skipWS(s, 0)
		if i >= len(s) || s[i] != '{' {
			return i, cNotObj
		}
	}
	i = skipWS(s, i+1)
	if i >= len(s) {
		return i, cEOF
	}
	if s[i] == '}' {
		return trailer(s, i+1)
	}
	var code int
	nx := 0 // index of the key expected next in topOrder
	for {
		if s[i] != '"' {
			return i, cKey
		}
		ks := i
		var f int
		if k := topOrder.find(s, i, nx); k >= 0 {
			p := &topOrder.pats[k]
			f = p.f
			nx = k + 1
			i += p.n
			if i >= len(s) || s[i] <= ' ' {
				if i = skipWS(s, i); i >= len(s) {
					return i, cEOF
				}
			}
		} else {
			var esc bool
			if i, esc, code = scanString(s, i+1); code != cOK {
				return i, code
			}
			key := s[ks+1 : i-1]
			if i+1 < len(s) && s[i] == ':' && s[i+1] > ' ' {
				i++
			} else if i, code = scanColon(s, i); code != cOK {
				return i, code
			}
			if esc {
				f = matchEscapedKey(key, fNone)
			} else {
				f = topField(key)
			}
			nx = topOrder.next(f, nx)
		}
		// s[i] is the first byte of the value.
		switch f {
		case fNone, fSkip:
			i, code = skipValue(s, i, 1)
		case fUser, fImpersonatedUser, fObjectRef, fResponseStatus:
			i, code = scanSub(s, i, f, ev)
		case fSourceIPs, fAnnotations:
			v := i
			i, code = skipValue(s, i, 1)
			want := byte('[')
			if f == fAnnotations {
				want = '{'
			}
			var raw []byte
			if s[v] == want {
				raw = s[v:i]
			}
			if f == fSourceIPs {
				ev.SourceIPs = raw
			} else {
				ev.Annotations = raw
			}
		case fRequestObject, fResponseObject:
			v := i
			i, code = skipValue(s, i, 1)
			sp := Span{Key: ks, Start: v, End: i}
			if f == fRequestObject {
				ev.RequestObject = sp
			} else {
				ev.ResponseObject = sp
			}
		default:
			var str []byte
			if s[i] == '"' {
				v := i + 1
				var esc bool
				if i, esc, code = scanString(s, v); code == cOK {
					str = s[v : i-1]
					if esc {
						ev.Escaped |= escapedBit(fNone, f)
					}
				}
			} else {
				i, code = skipValue(s, i, 1)
			}
			switch f {
			case fKind:
				ev.Kind = str
			case fAPIVersion:
				ev.APIVersion = str
			case fLevel:
				ev.Level = str
			case fAuditID:
				ev.AuditID = str
			case fStage:
				ev.Stage = str
			case fRequestURI:
				ev.RequestURI = str
			case fVerb:
				ev.Verb = str
			case fUserAgent:
				ev.UserAgent = str
			case fRequestReceivedTimestamp:
				ev.RequestReceivedTimestamp = str
			case fStageTimestamp:
				ev.StageTimestamp = str
			}
		}
		if code != cOK {
			return i, code
		}
		// After the value: ',' or '}'.
		if i >= len(s) {
			return i, cEOF
		}
		c := s[i]
		if c != ',' && c != '}' {
			i = skipWS(s, i)
			if i >= len(s) {
				return i, cEOF
			}
			c = s[i]
		}
		if c == '}' {
			return trailer(s, i+1)
		}
		if c != ',' {
			return i, cObjEnd
		}
		i++
		if i >= len(s) || s[i] != '"' {
			i = skipWS(s, i)
			if i >= len(s) {
				return i, cEOF
			}
		}
	}
}

// trailer checks that only whitespace follows the object.
func trailer(s []byte, i int) (int, int) {
	i = skipWS(s, i)
	if i < len(s) {
		return i, cTrailing
	}
	return i, cOK
}

// matchEscapedKey decodes a key that has escapes and matches it against
// the top-level keys (obj == fNone) or those of nested object obj. Our
// longest key has 24 bytes and a decoded byte comes from at most 6 raw
// bytes, so longer raw keys match nothing; shorter ones decode into a stack
// buffer large enough for any input (at most 3 bytes out per byte in).
//
//go:noinline
func matchEscapedKey(raw []byte, obj int) int {
	const maxRaw = 24 * 6
	if len(raw) > maxRaw {
		return fNone
	}
	var buf [3 * maxRaw]byte
	key, _, code := unquote(buf[:0], raw)
	if code != cOK {
		return fNone
	}
	if obj == fNone {
		return topField(key)
	}
	return subField(obj, key)
}

// scanSub scans one of the nested objects we read fields from (user,
// impersonatedUser, objectRef, responseStatus) starting at s[i]. The fields
// it owns are reset first: a repeated key replaces the earlier object.
func scanSub(s []byte, i, obj int, ev *Event) (int, int) {
	switch obj {
	case fUser:
		ev.Username, ev.UserUID, ev.UserGroups = nil, nil, nil
	case fImpersonatedUser:
		ev.ImpersonatedUsername = nil
	case fObjectRef:
		ev.ObjectRef = ObjectRef{}
	case fResponseStatus:
		ev.ResponseCode = 0
	}
	if s[i] != '{' {
		return skipValue(s, i, 1)
	}
	i = skipWS(s, i+1)
	if i >= len(s) {
		return i, cEOF
	}
	if s[i] == '}' {
		return i + 1, cOK
	}
	var code int
	order := userOrder
	switch obj {
	case fImpersonatedUser:
		order = impersonatedOrder
	case fObjectRef:
		order = objectRefOrder
	case fResponseStatus:
		order = responseStatusOrder
	}
	nx := 0
	for {
		if s[i] != '"' {
			return i, cKey
		}
		var f int
		if k := order.find(s, i, nx); k >= 0 {
			p := &order.pats[k]
			f = p.f
			nx = k + 1
			i += p.n
			if i >= len(s) || s[i] <= ' ' {
				if i = skipWS(s, i); i >= len(s) {
					return i, cEOF
				}
			}
		} else {
			ks := i + 1
			var esc bool
			if i, esc, code = scanString(s, ks); code != cOK {
				return i, code
			}
			key := s[ks : i-1]
			if i+1 < len(s) && s[i] == ':' && s[i+1] > ' ' {
				i++
			} else if i, code = scanColon(s, i); code != cOK {
				return i, code
			}
			if esc {
				f = matchEscapedKey(key, obj)
			} else {
				f = subField(obj, key)
			}
			nx = order.next(f, nx)
		}
		switch f {
		case fNone, fSkip:
			i, code = skipValue(s, i, 2)
		case fGroups:
			v := i
			i, code = skipValue(s, i, 2)
			ev.UserGroups = nil
			if s[v] == '[' {
				ev.UserGroups = s[v:i]
			}
		case fCode:
			v := i
			i, code = skipValue(s, i, 2)
			ev.ResponseCode = 0
			if code == cOK {
				ev.ResponseCode = parseCode(s[v:i])
			}
		default:
			var str []byte
			if s[i] == '"' {
				v := i + 1
				var esc bool
				if i, esc, code = scanString(s, v); code == cOK {
					str = s[v : i-1]
					if esc {
						ev.Escaped |= escapedBit(obj, f)
					}
				}
			} else {
				i, code = skipValue(s, i, 2)
			}
			switch f {
			case fUsername:
				if obj == fUser {
					ev.Username = str
				} else {
					ev.ImpersonatedUsername = str
				}
			case fUID:
				ev.UserUID = str
			case fResource:
				ev.ObjectRef.Resource = str
			case fNamespace:
				ev.ObjectRef.Namespace = str
			case fName:
				ev.ObjectRef.Name = str
			case fAPIGroup:
				ev.ObjectRef.APIGroup = str
			case fAPIVersion:
				ev.ObjectRef.APIVersion = str
			case fSubresource:
				ev.ObjectRef.Subresource = str
			}
		}
		if code != cOK {
			return i, code
		}
		i = skipWS(s, i)
		if i >= len(s) {
			return i, cEOF
		}
		switch s[i] {
		case '}':
			return i + 1, cOK
		case ',':
			i = skipWS(s, i+1)
			if i >= len(s) {
				return i, cEOF
			}
		default:
			return i, cObjEnd
		}
	}
}

// parseCode returns the value of an integer literal that fits in an int32,
// else 0.
func parseCode(b []byte) int {
	neg := false
	if len(b) > 0 && b[0] == '-' {
		neg = true
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 10 {
		return 0
	}
	var n int64
	for _, c := range b {
		if c-'0' >= 10 {
			return 0
		}
		n = n*10 + int64(c-'0')
	}
	if neg {
		n = -n
	}
	if n < -1<<31 || n > 1<<31-1 {
		return 0
	}
	return int(n)
}
