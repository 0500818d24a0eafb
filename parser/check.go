package parser

// Check reports whether ev, filled by Scan from one line of an audit log, is
// an audit event: its kind is "Event" and it has a non-empty auditID, as
// every event kube-apiserver writes has. A line can be a valid JSON object
// and still not be one ({}, an EventList, a record of another format); Scan
// accepts those, Check tells them apart. Escapes in kind are decoded.
//
// The error wraps ErrNotEvent and says what is missing. Check does not
// allocate, even on failure.
func (ev *Event) Check() error {
	return ev.check(false)
}

// CheckItem is Check for an item of an EventList, as SplitEventList returns
// them: kube-apiserver's webhook backend writes the items without kind and
// apiVersion, so an absent kind is accepted. A kind other than "Event", or
// no auditID, is still an error wrapping ErrNotEvent.
func (ev *Event) CheckItem() error {
	return ev.check(true)
}

// The errors of Check and CheckItem.
var (
	errNoKindNoID = &fixedError{`parser: not an audit event: no "kind" and no "auditID"`, ErrNotEvent}
	errNoKind     = &fixedError{`parser: not an audit event: no "kind" (or not a string)`, ErrNotEvent}
	errEventList  = &fixedError{`parser: not an audit event: kind is "EventList" (a webhook body: split it with SplitEventList)`, ErrNotEvent}
	errKind       = &fixedError{`parser: not an audit event: kind is not "Event"`, ErrNotEvent}
	errNoID       = &fixedError{`parser: not an audit event: no "auditID" (or not a string, or empty)`, ErrNotEvent}
)

func (ev *Event) check(item bool) error {
	noID := len(ev.AuditID) == 0 // every escape decodes to at least one byte
	switch {
	case ev.Kind == nil && item:
	case ev.Kind == nil && noID:
		return errNoKindNoID
	case ev.Kind == nil:
		return errNoKind
	case rawEquals(ev.Kind, "Event"):
	case rawEquals(ev.Kind, "EventList"):
		return errEventList
	default:
		return errKind
	}
	if noID {
		return errNoID
	}
	return nil
}

// rawEquals reports whether the raw JSON string body raw decodes to s,
// without allocating for an s of up to 16 bytes.
func rawEquals(raw []byte, s string) bool {
	if string(raw) == s {
		return true
	}
	// Each decoded byte comes from at most 6 raw ones (\u00XX), so a longer
	// raw string decodes to more than len(s) bytes.
	const maxS = 16
	if len(s) > maxS || len(raw) > 6*len(s) {
		return false
	}
	var buf [6 * maxS]byte
	d, _, code := unquote(buf[:0], raw)
	return code == cOK && string(d) == s
}
