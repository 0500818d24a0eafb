package parser

// Key prediction. kube-apiserver writes the keys of an audit event, and of
// its user, objectRef and responseStatus objects, in a fixed order (the Go
// struct order; the order lists include the v1beta1-only keys metadata and
// timestamp). Instead of scanning each key as a string and then matching
// it, Scan first compares the input with the quoted key it expects next,
// `"key":`, eight bytes at a time. A hit consumes the key, the colon and the
// validation of the key string at once (the bytes are exactly the expected
// plain ASCII); a miss falls back to scanning and matching, and resynchronises
// the expectation after the key it found. Correctness never depends on the
// order: only speed does.

// fSkip marks predicted keys whose value Scan does not extract.
const fSkip = -1

type keyPat struct {
	w [4]uint64 // `"key":` little-endian, zero padded
	m [4]uint64 // which bytes of w to compare
	n int       // length of `"key":`
	f int       // field
}

type keyOrder struct {
	pats []keyPat
	pos  [fCode + 1]int8 // field -> index in pats + 1 (0: not listed)
}

func newKeyOrder(keys []string, fields []int) *keyOrder {
	o := &keyOrder{}
	for k, key := range keys {
		q := `"` + key + `":`
		if len(q) > 32 {
			panic("key too long: " + key)
		}
		p := keyPat{n: len(q), f: fields[k]}
		for j := 0; j < len(q); j++ {
			p.w[j/8] |= uint64(q[j]) << (8 * (j % 8))
			p.m[j/8] |= 0xff << (8 * (j % 8))
		}
		o.pats = append(o.pats, p)
		if fields[k] > 0 {
			o.pos[fields[k]] = int8(k + 1)
		}
	}
	return o
}

// matchRest reports whether bytes 8 to 31 of s[i:] match pattern p; the
// caller has checked the first 8 and that s has 32 bytes from i.
func (p *keyPat) matchRest(s []byte, i int) bool {
	d := (load64(s, i+8)^p.w[1])&p.m[1] |
		(load64(s, i+16)^p.w[2])&p.m[2] |
		(load64(s, i+24)^p.w[3])&p.m[3]
	return d == 0
}

// maxSkip is how many optional keys a prediction may step over: an event
// without impersonatedUser, objectRef, requestObject or responseObject
// still hits.
const maxSkip = 3

// find returns the index of the pattern, among the one expected at nx and
// the maxSkip after it, that s[i:] starts with, or -1. It compares 32 bytes,
// so it misses within 32 bytes of the end of the input (the slow path
// handles that).
func (o *keyOrder) find(s []byte, i, nx int) int {
	if i+32 > len(s) {
		return -1
	}
	w0 := load64(s, i)
	end := min(nx+maxSkip+1, len(o.pats))
	for k := nx; k < end; k++ {
		p := &o.pats[k]
		if w0&p.m[0] == p.w[0] && p.matchRest(s, i) {
			return k
		}
	}
	return -1
}

// next returns the index to predict after field f was found by the slow
// path; unknown keys keep the prediction.
func (o *keyOrder) next(f, cur int) int {
	if f > 0 {
		if p := o.pos[f]; p != 0 {
			return int(p)
		}
	}
	return cur
}

var (
	topOrder = newKeyOrder(
		[]string{"kind", "apiVersion", "metadata", "level", "timestamp", "auditID", "stage", "requestURI", "verb", "user", "impersonatedUser", "sourceIPs", "userAgent", "objectRef", "responseStatus", "requestObject", "responseObject", "requestReceivedTimestamp", "stageTimestamp", "annotations"},
		[]int{fKind, fAPIVersion, fSkip, fLevel, fSkip, fAuditID, fStage, fRequestURI, fVerb, fUser, fImpersonatedUser, fSourceIPs, fUserAgent, fObjectRef, fResponseStatus, fRequestObject, fResponseObject, fRequestReceivedTimestamp, fStageTimestamp, fAnnotations})
	userOrder = newKeyOrder(
		[]string{"username", "uid", "groups", "extra"},
		[]int{fUsername, fUID, fGroups, fSkip})
	impersonatedOrder = newKeyOrder(
		[]string{"username", "uid", "groups", "extra"},
		[]int{fUsername, fSkip, fSkip, fSkip})
	objectRefOrder = newKeyOrder(
		[]string{"resource", "namespace", "name", "uid", "apiGroup", "apiVersion", "resourceVersion", "subresource"},
		[]int{fResource, fNamespace, fName, fSkip, fAPIGroup, fAPIVersion, fSkip, fSubresource})
	responseStatusOrder = newKeyOrder(
		[]string{"metadata", "status", "message", "reason", "details", "code"},
		[]int{fSkip, fSkip, fSkip, fSkip, fSkip, fCode})
)
