// Package policy applies a Kubernetes audit policy (an audit.k8s.io/v1
// Policy, the file kube-apiserver reads with --audit-policy-file) to audit
// events the agent has already parsed, and masks secrets in them.
//
// Decide evaluates the policy with kube-apiserver's semantics (rules in
// order, the first match wins, no match is level None) on the views
// parser.Scan filled, without allocating. Apply then takes away what the
// decision says the apiserver would not have written: the whole event
// (level None, an omitted stage), the request and response objects (a lower
// level), managedFields. It can only take away: a policy level above the
// event's changes nothing. A Redactor masks chosen fields. Rewrites go into
// a caller-supplied buffer; events left as they are are not copied.
package policy

import (
	"bytes"
	"encoding/binary"
	"strconv"
	"unicode/utf8"

	"github.com/audittail/audittail/parser"
)

// Level is an audit level, ordered: None < Metadata < Request <
// RequestResponse.
type Level uint8

// The audit levels.
const (
	None Level = iota
	Metadata
	Request
	RequestResponse

	levelUnset Level = 0xff
)

var levelNames = [...]string{"None", "Metadata", "Request", "RequestResponse"}

// String returns the level as kube-apiserver spells it.
func (l Level) String() string {
	if int(l) < len(levelNames) {
		return levelNames[l]
	}
	return "Level(" + strconv.Itoa(int(l)) + ")"
}

// ParseLevel parses a level as kube-apiserver spells it.
func ParseLevel(s string) (Level, bool) {
	for i, n := range levelNames {
		if s == n {
			return Level(i), true
		}
	}
	return 0, false
}

// parseLevelRaw parses a raw JSON string body (as parser.Event.Level).
func parseLevelRaw(b []byte) (Level, bool) {
	switch string(b) {
	case "None":
		return None, true
	case "Metadata":
		return Metadata, true
	case "Request":
		return Request, true
	case "RequestResponse":
		return RequestResponse, true
	}
	if bytes.IndexByte(b, '\\') >= 0 {
		var buf [64]byte
		if s, err := parser.Unquote(buf[:0], b); err == nil {
			return ParseLevel(string(s))
		}
	}
	return 0, false
}

// Stage is an audit stage.
type Stage uint8

// The audit stages.
const (
	RequestReceived Stage = iota
	ResponseStarted
	ResponseComplete
	Panic
)

var stageNames = [...]string{"RequestReceived", "ResponseStarted", "ResponseComplete", "Panic"}

// String returns the stage as kube-apiserver spells it.
func (s Stage) String() string {
	if int(s) < len(stageNames) {
		return stageNames[s]
	}
	return "Stage(?)"
}

// ParseStage parses a stage as kube-apiserver spells it.
func ParseStage(s string) (Stage, bool) {
	for i, n := range stageNames {
		if s == n {
			return Stage(i), true
		}
	}
	return 0, false
}

// stageSet is a set of stages, bit i for Stage(i).
type stageSet uint8

func setOf(ss []Stage) stageSet {
	var m stageSet
	for _, s := range ss {
		m |= 1 << s
	}
	return m
}

// stageBit returns the set holding the stage named by raw, or 0.
func stageBit(raw []byte) stageSet {
	switch string(raw) {
	case "RequestReceived":
		return 1 << RequestReceived
	case "ResponseStarted":
		return 1 << ResponseStarted
	case "ResponseComplete":
		return 1 << ResponseComplete
	case "Panic":
		return 1 << Panic
	}
	if bytes.IndexByte(raw, '\\') >= 0 {
		var buf [64]byte
		if s, err := parser.Unquote(buf[:0], raw); err == nil {
			if st, ok := ParseStage(string(s)); ok {
				return 1 << st
			}
		}
	}
	return 0
}

// Policy is a parsed audit policy. The exported fields are the file as
// decoded; Decide uses a compiled form built by Parse, so a Policy must
// come from Load or Parse, and its fields must not be changed afterwards
// (Name excepted). Decide and Apply may be called concurrently.
type Policy struct {
	// Name is recorded in the audittail.io/policy annotation of the
	// events Apply changes: the file's base name without extension.
	Name              string
	Rules             []Rule
	OmitStages        []Stage
	OmitManagedFields bool

	rules  []rule
	omit   stageSet
	groups map[string]int32 // the API groups the rules name, indexed
}

// Rule is one rule of a policy, as in audit.k8s.io/v1 PolicyRule.
type Rule struct {
	Level             Level
	Users             []string
	UserGroups        []string
	Verbs             []string
	Resources         []GroupResources
	Namespaces        []string
	NonResourceURLs   []string
	OmitStages        []Stage
	OmitManagedFields *bool // nil: the policy's OmitManagedFields
}

// GroupResources is a rule's resource selector, as in audit.k8s.io/v1.
type GroupResources struct {
	Group         string // "" is the core group, "*" any group
	Resources     []string
	ResourceNames []string
}

// rule is a Rule compiled for Decide.
type rule struct {
	level      Level
	omit       stageSet // the rule's and the policy's omitStages
	omitMF     bool
	users      []string
	groups     []string
	verbs      []string
	verbMask   uint16 // the known verbs of verbs
	namespaces []string
	resources  []groupResources // those with resources (or past 64 groups)
	// wholeGroups has bit i for each group i that an entry without
	// resources names (any resource of the group); anyGroupWhole: such
	// an entry for group "*".
	wholeGroups   uint64
	anyGroupWhole bool
	urls          []urlPattern
	// resourceRule: namespaces or resources set (the rule only matches
	// resource requests); urlRule: only nonResourceURLs set.
	resourceRule, urlRule bool
}

// groupResources is a GroupResources compiled: its group as an index into
// the policy's groups (anyAPIGroup for "*").
type groupResources struct {
	group         int32
	resources     []string
	resourceNames []string
}

// anyAPIGroup is the group index of "*"; an event's group that no rule
// names gets unknownAPIGroup.
const (
	anyAPIGroup     = -1
	unknownAPIGroup = -2
	groupPending    = -3 // not looked up yet
)

type urlPattern struct {
	s      string // the pattern, or the prefix for a trailing "*"
	prefix bool
}

func (p *Policy) compile() {
	p.omit = setOf(p.OmitStages)
	p.rules = make([]rule, len(p.Rules))
	p.groups = map[string]int32{}
	for i, r := range p.Rules {
		c := rule{
			level:      r.Level,
			omit:       p.omit | setOf(r.OmitStages),
			omitMF:     p.OmitManagedFields,
			users:      r.Users,
			groups:     r.UserGroups,
			verbs:      r.Verbs,
			namespaces: r.Namespaces,
		}
		for _, gr := range r.Resources {
			id := int32(anyAPIGroup)
			if gr.Group != "*" {
				var ok bool
				if id, ok = p.groups[gr.Group]; !ok {
					id = int32(len(p.groups))
					p.groups[gr.Group] = id
				}
			}
			switch {
			case len(gr.Resources) > 0:
				c.resources = append(c.resources, groupResources{group: id, resources: gr.Resources, resourceNames: gr.ResourceNames})
			case id == anyAPIGroup:
				c.anyGroupWhole = true
			case id < 64:
				c.wholeGroups |= 1 << id
			default:
				c.resources = append(c.resources, groupResources{group: id})
			}
		}
		if r.OmitManagedFields != nil {
			c.omitMF = *r.OmitManagedFields
		}
		for _, v := range r.Verbs {
			c.verbMask |= verbBit([]byte(v))
		}
		c.resourceRule = len(r.Namespaces) > 0 || len(r.Resources) > 0
		c.anyGroupWhole = c.anyGroupWhole || len(r.Resources) == 0 // a namespaces-only rule: any resource
		c.urlRule = !c.resourceRule && len(r.NonResourceURLs) > 0
		for _, u := range r.NonResourceURLs {
			switch {
			case u == "*":
				c.urls = append(c.urls, urlPattern{prefix: true})
			case len(u) > 0 && u[len(u)-1] == '*':
				c.urls = append(c.urls, urlPattern{s: trimStars(u), prefix: true})
			default:
				c.urls = append(c.urls, urlPattern{s: u})
			}
		}
		p.rules[i] = c
	}
}

func trimStars(s string) string {
	for len(s) > 0 && s[len(s)-1] == '*' {
		s = s[:len(s)-1]
	}
	return s
}

// Decision is what a policy says about one event.
type Decision struct {
	// Level is the level of the first matching rule; None when no rule
	// matches.
	Level Level
	// Omit: the event's stage is in the matching rule's omitStages (or,
	// when no rule matches, the policy's).
	Omit bool
	// OmitManagedFields: managedFields are to be removed from the
	// request and response objects.
	OmitManagedFields bool
	// Rule is the index of the matching rule, -1 for none.
	Rule int
}

// Drop reports whether the event is not to be written at all.
func (d Decision) Drop() bool { return d.Level == None || d.Omit }

// Decide evaluates the policy for the event ev, which parser.Scan filled
// from line, as kube-apiserver evaluates it for the request the event
// records: the user (user.username, user.groups, not the impersonated
// user: the apiserver evaluates its policy before impersonation), the verb,
// and either the objectRef (a resource request) or, without an objectRef,
// the path of requestURI (a non-resource request). It does not allocate.
func (p *Policy) Decide(line []byte, ev *parser.Event) Decision {
	var a attrs
	o := &ev.ObjectRef
	a.resourceRequest = o.Resource != nil || o.Namespace != nil || o.Name != nil ||
		o.APIGroup != nil || o.APIVersion != nil || o.Subresource != nil
	a.user, a.verb = ev.Username, ev.Verb
	a.ns, a.group, a.res, a.sub, a.name = o.Namespace, o.APIGroup, o.Resource, o.Subresource, o.Name
	a.groupsRaw = ev.UserGroups
	if !a.resourceRequest {
		// A non-resource request: the rules match the path of its URI.
		a.path = ev.RequestURI
		if i := bytes.IndexByte(a.path, '?'); i >= 0 {
			a.path = a.path[:i]
		}
	}
	names := ev.Escaped&(parser.EscapedVerb|parser.EscapedUsername|parser.EscapedObjectRef) != 0
	path := !a.resourceRequest && (ev.Escaped&parser.EscapedRequestURI != 0 || bytes.IndexByte(a.path, '%') >= 0)
	if names || path {
		// Escapes (rare; the scanner saw them): decode, into buf while it
		// lasts. Without escapes the raw bytes are the values (but for
		// invalid UTF-8, which kube-apiserver's encoder never writes).
		// buf is declared here so that the common case does not clear it.
		var buf [512]byte
		b := buf[:0]
		if names {
			a.user, b = unquoteTo(b, a.user)
			a.verb, b = unquoteTo(b, a.verb)
			a.ns, b = unquoteTo(b, a.ns)
			a.group, b = unquoteTo(b, a.group)
			a.res, b = unquoteTo(b, a.res)
			a.sub, b = unquoteTo(b, a.sub)
			a.name, b = unquoteTo(b, a.name)
		}
		if path {
			a.path = requestPath(b, ev.RequestURI)
		}
	}
	a.verbBit = verbBit(a.verb)
	a.groups, a.groupID = p.groups, groupPending
	stage := stageBit(ev.Stage)
	for i := range p.rules {
		ru := &p.rules[i]
		if !ru.matches(&a) {
			continue
		}
		return Decision{Level: ru.level, Omit: ru.omit&stage != 0, OmitManagedFields: ru.omitMF, Rule: i}
	}
	return Decision{Level: None, Omit: p.omit&stage != 0, OmitManagedFields: p.OmitManagedFields, Rule: -1}
}

// attrs are the attributes of a request that rules match on, decoded.
type attrs struct {
	user, verb                []byte
	verbBit                   uint16
	ns, group, res, sub, name []byte
	path                      []byte // of a non-resource request, decoded
	groupID                   int32  // index of group in groups, looked up on first use
	groups                    map[string]int32
	resourceRequest           bool
	groupsRaw                 []byte // raw JSON array
}

var knownVerbs = [...]string{"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection", "proxy"}

// verbBit returns the bit of a known verb (its index in knownVerbs), or 0.
func verbBit(v []byte) uint16 {
	var i int
	switch string(v) {
	case "get":
		i = 0
	case "list":
		i = 1
	case "watch":
		i = 2
	case "create":
		i = 3
	case "update":
		i = 4
	case "patch":
		i = 5
	case "delete":
		i = 6
	case "deletecollection":
		i = 7
	case "proxy":
		i = 8
	default:
		return 0
	}
	return 1 << i
}

// matches reports whether the rule matches the request. The checks are
// ANDed, so their order is free: the cheap and selective ones come first,
// the user's groups (read from the raw array) last.
func (ru *rule) matches(a *attrs) bool {
	if len(ru.verbs) > 0 {
		if a.verbBit != 0 {
			if ru.verbMask&a.verbBit == 0 {
				return false
			}
		} else if !contains(ru.verbs, a.verb) {
			return false
		}
	}
	if ru.resourceRule && !a.resourceRequest || ru.urlRule && a.resourceRequest {
		return false
	}
	if len(ru.users) > 0 && !contains(ru.users, a.user) {
		return false
	}
	if ru.resourceRule && !ru.matchesResource(a) || ru.urlRule && !ru.matchesPath(a.path) {
		return false
	}
	if len(ru.groups) > 0 {
		return anyGroup(ru.groups, a.groupsRaw)
	}
	return true
}

func (ru *rule) matchesResource(a *attrs) bool {
	if len(ru.namespaces) > 0 && !contains(ru.namespaces, a.ns) {
		return false
	}
	if a.groupID == groupPending {
		a.groupID = unknownAPIGroup
		if id, ok := a.groups[string(a.group)]; ok {
			a.groupID = id
		}
	}
	if ru.anyGroupWhole || a.groupID >= 0 && a.groupID < 64 && ru.wholeGroups&(1<<a.groupID) != 0 {
		return true
	}
	for i := range ru.resources {
		gr := &ru.resources[i]
		if gr.group != anyAPIGroup && gr.group != a.groupID {
			continue
		}
		if len(gr.resources) == 0 {
			return true
		}
		if len(gr.resourceNames) > 0 && !contains(gr.resourceNames, a.name) {
			continue
		}
		for _, pat := range gr.resources {
			if resourceMatches(pat, a.res, a.sub) {
				return true
			}
		}
	}
	return false
}

// unquoteTo decodes the raw JSON string body raw at the end of b and
// returns the decoded value and b extended.
func unquoteTo(b, raw []byte) ([]byte, []byte) {
	if plain(raw) {
		return raw, b
	}
	n := len(b)
	out, err := parser.Unquote(b, raw)
	if err != nil {
		return raw, b
	}
	return out[n:], out
}

// resourceMatches reports whether a rule's resource pattern matches
// resource and subresource: "*", "resource", "resource/subresource",
// "*/subresource" (only with a subresource) and "resource/*" (the resource
// with or without a subresource), as kube-apiserver's checker does.
func resourceMatches(pat string, res, sub []byte) bool {
	if pat == "*" {
		return true
	}
	if len(sub) == 0 {
		if pat == string(res) {
			return true
		}
	} else if len(pat) == len(res)+1+len(sub) && pat[:len(res)] == string(res) &&
		pat[len(res)] == '/' && pat[len(res)+1:] == string(sub) {
		return true
	}
	if len(sub) > 0 && len(pat) >= 2 && pat[0] == '*' && pat[1] == '/' && pat[2:] == string(sub) {
		return true
	}
	if n := len(pat); n >= 2 && pat[n-2] == '/' && pat[n-1] == '*' && pat[:n-2] == string(res) {
		return true
	}
	return false
}

func (ru *rule) matchesPath(path []byte) bool {
	for _, u := range ru.urls {
		if u.prefix {
			if len(path) >= len(u.s) && string(path[:len(u.s)]) == u.s {
				return true
			}
		} else if string(path) == u.s {
			return true
		}
	}
	return false
}

func contains(list []string, b []byte) bool {
	for _, s := range list {
		if s == string(b) {
			return true
		}
	}
	return false
}

// containsRaw reports whether the decoded value of the raw JSON string body
// raw is in list; nil (absent) is the empty string.
func containsRaw(list []string, raw []byte) bool {
	if plain(raw) {
		return contains(list, raw)
	}
	var buf [256]byte
	v, err := parser.Unquote(buf[:0], raw)
	if err != nil {
		return contains(list, raw)
	}
	return contains(list, v)
}

// anyGroup reports whether one of the strings of the raw JSON array groups
// is in list.
func anyGroup(list []string, groups []byte) bool {
	for i := 0; ; {
		raw, next, ok := nextString(groups, i)
		if !ok {
			return false
		}
		if raw != nil && containsRaw(list, raw) {
			return true
		}
		i = next
	}
}

// plain reports whether raw decodes to itself: no escape, valid UTF-8.
// It looks at 8 bytes at a time for a backslash or a byte >= 0x80 (the
// fields rules match on are short ASCII names).
func plain(raw []byte) bool {
	const ones, highs, backslashes = 0x0101010101010101, 0x8080808080808080, 0x5c5c5c5c5c5c5c5c
	i := 0
	for ; i+8 <= len(raw); i += 8 {
		x := binary.LittleEndian.Uint64(raw[i:])
		y := x ^ backslashes // a zero byte where x has a backslash
		if (x|(y-ones)&^y)&highs != 0 {
			return plainFrom(raw[i:])
		}
	}
	return plainFrom(raw[i:])
}

func plainFrom(raw []byte) bool {
	for i, c := range raw {
		if c == '\\' {
			return false
		}
		if c >= utf8.RuneSelf {
			return bytes.IndexByte(raw[i:], '\\') < 0 && utf8.Valid(raw[i:])
		}
	}
	return true
}

// requestPath returns the path of a request URI (a raw JSON string body),
// decoding into b if need be: the part before '?', percent-decoded as
// net/url does (left as it is when an escape is invalid).
func requestPath(b, rawURI []byte) []byte {
	u, b := unquoteTo(b, rawURI)
	if i := bytes.IndexByte(u, '?'); i >= 0 {
		u = u[:i]
	}
	if bytes.IndexByte(u, '%') < 0 {
		return u
	}
	n := len(b)
	for i := 0; i < len(u); i++ {
		c := u[i]
		if c == '%' {
			if i+2 >= len(u) || !isHex(u[i+1]) || !isHex(u[i+2]) {
				return u
			}
			c = unhex(u[i+1])<<4 | unhex(u[i+2])
			i += 2
		}
		b = append(b, c)
	}
	return b[n:]
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}
