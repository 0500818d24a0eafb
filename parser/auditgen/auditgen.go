// Package auditgen writes realistic audit.k8s.io/v1 Event lines, shaped like
// the ones kube-apiserver's log backend writes: the same key order, MicroTime
// timestamps, escaped annotation strings, and request/response objects at the
// Request and RequestResponse levels.
//
// It is used by `audittail gen`, by the tests and by the benchmarks. Output is
// deterministic for a given seed; auditIDs are unique per Generator.
package auditgen

import (
	"math/rand/v2"
	"strconv"
	"time"
)

// Level is an audit policy level.
type Level int

// The audit levels that produce events.
const (
	Metadata Level = iota
	Request
	RequestResponse
)

// String returns the level as kube-apiserver spells it.
func (l Level) String() string {
	switch l {
	case Request:
		return "Request"
	case RequestResponse:
		return "RequestResponse"
	default:
		return "Metadata"
	}
}

// ParseLevel parses a level name; it accepts the three audit levels.
func ParseLevel(s string) (Level, bool) {
	switch s {
	case "Metadata":
		return Metadata, true
	case "Request":
		return Request, true
	case "RequestResponse":
		return RequestResponse, true
	}
	return 0, false
}

// Generator produces audit event lines. It is not safe for concurrent use.
type Generator struct {
	rng *rand.Rand
	id  uint64 // high bits of every auditID: makes generators with different seeds disjoint
	seq uint64
}

// New returns a Generator seeded with seed.
func New(seed uint64) *Generator {
	return &Generator{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), id: seed}
}

// Count returns how many events the Generator has produced.
func (g *Generator) Count() uint64 { return g.seq }

// AuditID returns the auditID the n-th event (counting from 0) of a
// Generator seeded with seed carries.
func AuditID(seed, n uint64) string {
	return string(appendUUID(nil, seed, n))
}

type request struct {
	verb, resource, group, version, sub string
	namespaced, named                   bool
}

var requests = []request{
	{"get", "configmaps", "", "v1", "", true, true},
	{"list", "pods", "", "v1", "", true, false},
	{"watch", "pods", "", "v1", "", true, false},
	{"get", "leases", "coordination.k8s.io", "v1", "", true, true},
	{"update", "leases", "coordination.k8s.io", "v1", "", true, true},
	{"create", "pods", "", "v1", "", true, true},
	{"patch", "deployments", "apps", "v1", "", true, true},
	{"update", "pods", "", "v1", "status", true, true},
	{"get", "secrets", "", "v1", "", true, true},
	{"create", "tokenreviews", "authentication.k8s.io", "v1", "", false, false},
	{"create", "subjectaccessreviews", "authorization.k8s.io", "v1", "", false, false},
	{"list", "nodes", "", "v1", "", false, false},
	{"get", "nodes", "", "v1", "", false, true},
	{"delete", "pods", "", "v1", "", true, true},
	{"create", "events", "", "v1", "", true, true},
	{"get", "endpointslices", "discovery.k8s.io", "v1", "", true, true},
}

var namespaces = []string{"kube-system", "default", "monitoring", "ingress-nginx", "cert-manager", "payments"}

type user struct {
	name, uid, agent string
	groups           []string
	pod              bool
}

var users = []user{
	{"system:serviceaccount:kube-system:coredns", "2b7d4f6e-1c39-4a2b-9a6d-0f1e2d3c4b5a", "coredns/v1.11.1 (linux/amd64) kubernetes/$Format", []string{"system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"}, true},
	{"system:node:cp-1", "", "kubelet/v1.31.4 (linux/amd64) kubernetes/a78aa47", []string{"system:nodes", "system:authenticated"}, false},
	{"system:kube-controller-manager", "", "kube-controller-manager/v1.31.4 (linux/amd64) kubernetes/a78aa47/leader-election", []string{"system:authenticated"}, false},
	{"system:kube-scheduler", "", "kube-scheduler/v1.31.4 (linux/amd64) kubernetes/a78aa47/scheduler", []string{"system:authenticated"}, false},
	{"alice@example.com", "", "kubectl/v1.31.2 (darwin/arm64) kubernetes/5864a46", []string{"dev-team", "system:authenticated"}, false},
	{"system:serviceaccount:argocd:argocd-application-controller", "8c1f0a2e-5d4b-4e3f-b2a1-9f8e7d6c5b4a", "argocd-application-controller/v2.12.3+1b2c3d4 (linux/amd64)", []string{"system:serviceaccounts", "system:serviceaccounts:argocd", "system:authenticated"}, true},
}

var ips = []string{"10.42.0.5", "10.42.1.17", "192.168.10.21", "172.31.4.9", "::1", "2001:db8::7"}

// Append appends one event at the given level, stage timestamp ts, and a
// trailing newline to dst.
func (g *Generator) Append(dst []byte, level Level, ts time.Time) []byte {
	r := requests[g.rng.IntN(len(requests))]
	u := users[g.rng.IntN(len(users))]
	ns := namespaces[g.rng.IntN(len(namespaces))]
	name := g.name(r.resource)
	stage := "ResponseComplete"
	code := 200
	switch {
	case r.verb == "watch":
		stage = "ResponseStarted"
	case r.verb == "create":
		code = 201
	}
	switch g.rng.IntN(50) {
	case 0:
		code = 403
	case 1:
		code = 404
	case 2:
		code = 500
	case 3:
		if r.verb != "watch" {
			stage = "RequestReceived"
			code = 0
		}
	}

	dst = append(dst, `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"`...)
	dst = append(dst, level.String()...)
	dst = append(dst, `","auditID":"`...)
	dst = appendUUID(dst, g.id, g.seq)
	g.seq++
	dst = append(dst, `","stage":"`...)
	dst = append(dst, stage...)
	dst = append(dst, `","requestURI":"`...)
	dst = appendURI(dst, r, ns, name)
	dst = append(dst, `","verb":"`...)
	dst = append(dst, r.verb...)
	dst = append(dst, `","user":{"username":`...)
	dst = appendString(dst, u.name)
	if u.uid != "" {
		dst = append(dst, `,"uid":"`...)
		dst = append(dst, u.uid...)
		dst = append(dst, '"')
	}
	dst = append(dst, `,"groups":[`...)
	for i, gr := range u.groups {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, gr)
	}
	dst = append(dst, ']')
	if u.pod {
		dst = append(dst, `,"extra":{"authentication.kubernetes.io/credential-id":["JTI=`...)
		dst = appendUUID(dst, g.id^0xabcdef, g.seq)
		dst = append(dst, `"],"authentication.kubernetes.io/node-name":["cp-1"],"authentication.kubernetes.io/pod-name":["`...)
		dst = append(dst, name...)
		dst = append(dst, `"]}`...)
	}
	dst = append(dst, `},"sourceIPs":["`...)
	dst = append(dst, ips[g.rng.IntN(len(ips))]...)
	dst = append(dst, `"],"userAgent":`...)
	dst = appendString(dst, u.agent)
	dst = append(dst, `,"objectRef":{"resource":"`...)
	dst = append(dst, r.resource...)
	if r.namespaced {
		dst = append(dst, `","namespace":"`...)
		dst = append(dst, ns...)
	}
	if r.named {
		dst = append(dst, `","name":"`...)
		dst = append(dst, name...)
	}
	if r.group != "" {
		dst = append(dst, `","apiGroup":"`...)
		dst = append(dst, r.group...)
	}
	dst = append(dst, `","apiVersion":"`...)
	dst = append(dst, r.version...)
	if r.sub != "" {
		dst = append(dst, `","subresource":"`...)
		dst = append(dst, r.sub...)
	}
	dst = append(dst, `"}`...)
	if stage != "RequestReceived" {
		dst = append(dst, `,"responseStatus":{"metadata":{}`...)
		if code >= 400 {
			dst = append(dst, `,"status":"Failure","message":`...)
			dst = appendString(dst, r.resource+" \""+name+"\" is forbidden: User \""+u.name+"\" cannot "+r.verb+" resource \""+r.resource+"\" in API group \""+r.group+"\" in the namespace \""+ns+"\"")
			dst = append(dst, `,"reason":"Forbidden","details":{"name":"`...)
			dst = append(dst, name...)
			dst = append(dst, `","kind":"`...)
			dst = append(dst, r.resource...)
			dst = append(dst, `"}`...)
		}
		dst = append(dst, `,"code":`...)
		dst = strconv.AppendInt(dst, int64(code), 10)
		dst = append(dst, '}')
	}
	writes := r.verb == "create" || r.verb == "update" || r.verb == "patch"
	if level >= Request && writes {
		dst = append(dst, `,"requestObject":`...)
		dst = g.appendObject(dst, r, ns, name, false)
	}
	if level == RequestResponse && stage == "ResponseComplete" && r.verb != "delete" {
		dst = append(dst, `,"responseObject":`...)
		dst = g.appendObject(dst, r, ns, name, true)
	}
	received := ts.Add(-time.Duration(200+g.rng.IntN(40000)) * time.Microsecond)
	dst = append(dst, `,"requestReceivedTimestamp":"`...)
	dst = received.UTC().AppendFormat(dst, "2006-01-02T15:04:05.000000Z")
	dst = append(dst, `","stageTimestamp":"`...)
	dst = ts.UTC().AppendFormat(dst, "2006-01-02T15:04:05.000000Z")
	dst = append(dst, `","annotations":{"authorization.k8s.io/decision":"`...)
	if code == 403 {
		dst = append(dst, `forbid","authorization.k8s.io/reason":""`...)
	} else {
		dst = append(dst, `allow","authorization.k8s.io/reason":`...)
		dst = appendString(dst, "RBAC: allowed by ClusterRoleBinding \"system:"+r.resource+"\" of ClusterRole \"system:"+r.resource+"\" to User \""+u.name+"\"")
	}
	if r.resource == "pods" && r.verb == "create" {
		dst = append(dst, `,"pod-security.kubernetes.io/enforce-policy":"baseline:latest"`...)
	}
	dst = append(dst, "}}\n"...)
	return dst
}

// AppendMixed appends one event whose level is drawn from a production-like
// mix: mostly Metadata, some Request and RequestResponse.
func (g *Generator) AppendMixed(dst []byte, ts time.Time) []byte {
	l := Metadata
	switch n := g.rng.IntN(10); {
	case n >= 9:
		l = RequestResponse
	case n >= 7:
		l = Request
	}
	return g.Append(dst, l, ts)
}

func (g *Generator) name(resource string) string {
	switch resource {
	case "leases":
		return "kube-controller-manager"
	case "nodes":
		return "cp-1"
	case "configmaps":
		return "extension-apiserver-authentication"
	}
	const alnum = "bcdfghjklmnpqrstvwxz2456789"
	b := []byte("web-7d9c5b8f6-xxxxx")
	for i := len(b) - 5; i < len(b); i++ {
		b[i] = alnum[g.rng.IntN(len(alnum))]
	}
	return string(b)
}

func appendURI(dst []byte, r request, ns, name string) []byte {
	if r.group == "" {
		dst = append(dst, "/api/"...)
	} else {
		dst = append(dst, "/apis/"...)
		dst = append(dst, r.group...)
		dst = append(dst, '/')
	}
	dst = append(dst, r.version...)
	if r.namespaced {
		dst = append(dst, "/namespaces/"...)
		dst = append(dst, ns...)
	}
	dst = append(dst, '/')
	dst = append(dst, r.resource...)
	if r.named && r.verb != "create" {
		dst = append(dst, '/')
		dst = append(dst, name...)
	}
	if r.sub != "" {
		dst = append(dst, '/')
		dst = append(dst, r.sub...)
	}
	switch r.verb {
	case "watch":
		dst = append(dst, `?allowWatchBookmarks=true\u0026resourceVersion=184467\u0026timeout=7m42s\u0026watch=true`...)
	case "list":
		dst = append(dst, `?limit=500\u0026resourceVersion=0`...)
	case "patch":
		dst = append(dst, `?fieldManager=kubectl-client-side-apply\u0026fieldValidation=Strict`...)
	}
	return dst
}

// appendObject appends a Kubernetes object of a few hundred bytes to ~16 KB.
func (g *Generator) appendObject(dst []byte, r request, ns, name string, response bool) []byte {
	kind := r.resource
	dst = append(dst, `{"kind":"`...)
	dst = append(dst, kind...)
	dst = append(dst, `","apiVersion":"`...)
	if r.group != "" {
		dst = append(dst, r.group...)
		dst = append(dst, '/')
	}
	dst = append(dst, r.version...)
	dst = append(dst, `","metadata":{"name":"`...)
	dst = append(dst, name...)
	dst = append(dst, `","namespace":"`...)
	dst = append(dst, ns...)
	dst = append(dst, '"')
	if response {
		dst = append(dst, `,"uid":"`...)
		dst = appendUUID(dst, g.id^0x5eed, g.seq)
		dst = append(dst, `","resourceVersion":"`...)
		dst = strconv.AppendUint(dst, 100000+g.seq, 10)
		dst = append(dst, `","creationTimestamp":"2026-11-20T08:15:02Z"`...)
	} else {
		dst = append(dst, `,"creationTimestamp":null`...)
	}
	dst = append(dst, `,"labels":{"app.kubernetes.io/name":"web","app.kubernetes.io/part-of":"shop","pod-template-hash":"7d9c5b8f6"},"annotations":{"kubectl.kubernetes.io/last-applied-configuration":`...)
	dst = appendString(dst, "{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\":{\"annotations\":{},\"name\":\"web\",\"namespace\":\""+ns+"\"},\"spec\":{\"replicas\":3,\"template\":{\"spec\":{\"containers\":[{\"image\":\"nginx:1.27\",\"name\":\"web\"}]}}}}\n")
	dst = append(dst, `}},"spec":{"containers":[`...)
	n := 1 + g.rng.IntN(4)
	for i := 0; i < n; i++ {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"name":"web-`...)
		dst = strconv.AppendInt(dst, int64(i), 10)
		dst = append(dst, `","image":"registry.example.com/shop/web:1.27.`...)
		dst = strconv.AppendInt(dst, int64(g.rng.IntN(9)), 10)
		dst = append(dst, `","args":["--port=8080","--log-level=info","--greeting=h\u00e9llo \u003cworld\u003e"],"env":[`...)
		envs := 2 + g.rng.IntN(20)
		for j := 0; j < envs; j++ {
			if j > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, `{"name":"SETTING_`...)
			dst = strconv.AppendInt(dst, int64(j), 10)
			dst = append(dst, `","value":"`...)
			for k := 0; k < 4+g.rng.IntN(12); k++ {
				dst = append(dst, "abcdefghij"[g.rng.IntN(10)])
			}
			dst = append(dst, `"}`...)
		}
		dst = append(dst, `],"resources":{"limits":{"cpu":"500m","memory":"256Mi"},"requests":{"cpu":0.25,"memory":"128Mi"}},"ports":[{"containerPort":8080,"protocol":"TCP"}],"readinessProbe":{"httpGet":{"path":"/healthz","port":8080},"periodSeconds":10,"failureThreshold":3},"securityContext":{"allowPrivilegeEscalation":false,"readOnlyRootFilesystem":true,"runAsNonRoot":true,"capabilities":{"drop":["ALL"]}}}`...)
	}
	dst = append(dst, `],"restartPolicy":"Always","terminationGracePeriodSeconds":30,"dnsPolicy":"ClusterFirst","enableServiceLinks":true,"priority":0,"tolerations":[{"key":"node.kubernetes.io/not-ready","operator":"Exists","effect":"NoExecute","tolerationSeconds":300}]}`...)
	if response {
		dst = append(dst, `,"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True","lastProbeTime":null,"lastTransitionTime":"2026-11-20T08:15:09Z"}],"hostIP":"192.168.10.21","podIP":"10.42.1.17","qosClass":"Burstable","startTime":"2026-11-20T08:15:02Z"}`...)
	}
	return append(dst, '}')
}

const hexdigits = "0123456789abcdef"

// appendUUID appends a UUID-shaped string made of hi and lo.
func appendUUID(dst []byte, hi, lo uint64) []byte {
	// Scramble so consecutive IDs do not share long prefixes, as real v4 UUIDs.
	a := mix(hi)
	b := lo*0x9e3779b97f4a7c15 ^ a
	var buf [32]byte
	for i := 0; i < 16; i++ {
		buf[i] = hexdigits[(a>>(60-4*i))&0xf]
	}
	// The low half keeps lo in full (bijective), so IDs never collide.
	for i := 0; i < 16; i++ {
		buf[16+i] = hexdigits[(b>>(60-4*i))&0xf]
	}
	buf[12] = '4'
	dst = append(dst, buf[0:8]...)
	dst = append(dst, '-')
	dst = append(dst, buf[8:12]...)
	dst = append(dst, '-')
	dst = append(dst, buf[12:16]...)
	dst = append(dst, '-')
	dst = append(dst, buf[16:20]...)
	dst = append(dst, '-')
	return append(dst, buf[20:32]...)
}

func mix(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

// appendString appends s as a JSON string, escaped the way encoding/json
// (and so kube-apiserver) escapes it, including <, > and &.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c == '\n':
			dst = append(dst, '\\', 'n')
		case c < 0x20 || c == '<' || c == '>' || c == '&':
			dst = append(dst, '\\', 'u', '0', '0', hexdigits[c>>4], hexdigits[c&0xf])
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}
