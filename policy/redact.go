package policy

import (
	"fmt"
	"strings"

	"github.com/audittail/audittail/parser"
)

// The redaction presets.
const (
	// PresetSecrets masks the data and stringData of Secrets in request
	// and response objects (lists' items too), and their
	// kubectl.kubernetes.io/last-applied-configuration annotation, which
	// holds the same data: for events whose objectRef is a core
	// "secrets" resource.
	PresetSecrets = "secrets"
	// PresetTokens masks bearer tokens: TokenReview spec.token and
	// TokenRequest (serviceaccounts/token) status.token.
	PresetTokens = "tokens"
)

const lastApplied = `["kubectl.kubernetes.io/last-applied-configuration"]`

// Event classes the presets tell apart, by objectRef.
const (
	classOther = iota
	classSecret
	classTokenReview
	classTokenRequest
	nClasses
)

var presets = map[string][nClasses][]string{
	PresetSecrets: {classSecret: objectPaths(
		"data", "stringData", "metadata.annotations"+lastApplied,
		"items[*].data", "items[*].stringData", "items[*].metadata.annotations"+lastApplied,
	)},
	PresetTokens: {
		classTokenReview:  objectPaths("spec.token"),
		classTokenRequest: objectPaths("status.token"),
	},
}

// objectPaths returns each path under requestObject and responseObject.
func objectPaths(paths ...string) []string {
	var out []string
	for _, p := range paths {
		out = append(out, "requestObject."+p, "responseObject."+p)
	}
	return out
}

// Redactor masks fields of audit events. It is safe for concurrent use.
type Redactor struct {
	classes [nClasses]classTries
}

type classTries struct {
	req, resp     *node // under requestObject and responseObject
	reqMF, respMF *node // the same, and managedFields removed
	top           *node // the other members
}

// NewRedactor returns a Redactor for a list of presets ("secrets",
// "tokens") and field paths (see Path). Errors name the entry:
// `redact[2]: path "a..b": offset 2: empty field name`.
func NewRedactor(entries []string) (*Redactor, error) {
	var tries [nClasses]*node
	for c := range tries {
		tries[c] = &node{}
	}
	for i, e := range entries {
		if ps, ok := presets[e]; ok {
			for c, paths := range ps {
				for _, s := range paths {
					p, err := ParsePath(s)
					if err != nil {
						panic(err)
					}
					tries[c].add(p.segs, false)
				}
			}
			continue
		}
		if e != "" && !strings.ContainsAny(e, ".[") && !looksLikeField(e) {
			return nil, fmt.Errorf("redact[%d]: unknown preset %q (want secrets, tokens or a field path)", i, e)
		}
		p, err := ParsePath(e)
		if err != nil {
			return nil, fmt.Errorf("redact[%d]: %w", i, err)
		}
		for c := range tries {
			tries[c].add(p.segs, false)
		}
	}
	r := &Redactor{}
	for c, t := range tries {
		ct := &r.classes[c]
		var req, resp *node
		top := &node{}
		for _, kc := range t.keys {
			switch kc.key {
			case "requestObject":
				req = kc.n
			case "responseObject":
				resp = kc.n
			default:
				top.keys = append(top.keys, kc)
			}
		}
		ct.top = top.finish()
		ct.reqMF = withManagedFields(req)
		ct.respMF = withManagedFields(resp)
		ct.req = req.finish()
		ct.resp = resp.finish()
	}
	return r, nil
}

// looksLikeField reports whether a single name is a top-level field of an
// audit event, so that a misspelt preset is an error and not a path that
// selects nothing.
func looksLikeField(s string) bool {
	switch s {
	case "requestObject", "responseObject", "annotations", "user", "impersonatedUser",
		"sourceIPs", "userAgent", "requestURI", "objectRef", "responseStatus", "verb":
		return true
	}
	return false
}

func withManagedFields(n *node) *node {
	if n == nil {
		return managedFields
	}
	c := n.clone()
	c.merge(managedFields)
	return c.finish()
}

// class tells which presets' paths apply to the event.
func (r *Redactor) class(ev *parser.Event) int {
	o := &ev.ObjectRef
	if o.Resource == nil {
		return classOther
	}
	var buf [128]byte
	res, b := unquoteTo(buf[:0], o.Resource)
	group, b := unquoteTo(b, o.APIGroup)
	sub, _ := unquoteTo(b, o.Subresource)
	switch string(res) {
	case "secrets":
		if len(group) == 0 && len(sub) == 0 {
			return classSecret
		}
	case "tokenreviews":
		if string(group) == "authentication.k8s.io" {
			return classTokenReview
		}
	case "serviceaccounts":
		if len(group) == 0 && string(sub) == "token" {
			return classTokenRequest
		}
	}
	return classOther
}
