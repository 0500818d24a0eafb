package difftest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apiserver/pkg/apis/audit"
	auditinternal "k8s.io/apiserver/pkg/audit"
	k8spolicy "k8s.io/apiserver/pkg/audit/policy"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"

	"github.com/audittail/audittail/parser"
	"github.com/audittail/audittail/parser/auditgen"
	"github.com/audittail/audittail/policy"
)

const root = "../../.."

// formsPolicy has a rule for every form of every field, so that the
// synthetic corpus reaches each of them.
const formsPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [Panic]
omitManagedFields: true
rules:
  - level: None
    users: ["al@ice"]
    verbs: [watch]
  - level: Request
    userGroups: [system:nodes]
    resources: [{group: "", resources: ["nodes/*"]}]
    omitManagedFields: false
  - level: Metadata
    resources: [{group: "", resources: ["*/status"]}]
    omitStages: [RequestReceived]
  - level: RequestResponse
    resources: [{group: "*", resources: [leases, "pods/exec"], resourceNames: [x, cfg]}]
  - level: Request
    namespaces: ["", kube-system]
    verbs: [delete, deletecollection]
  - level: Metadata
    nonResourceURLs: ["/logs/a b", "/healthz*", "/apis/*", "*"]
    users: [system:kube-controller-manager, kubelet]
  - level: None
    nonResourceURLs: [/version, "/readyz*"]
  - level: RequestResponse
    resources: [{group: apps}, {group: "", resources: ["*"]}]
    namespaces: [default]
    omitStages: [ResponseStarted]
  - level: Request
    resources: [{group: example.com, resources: [widgets/status]}]
  - level: Metadata
    userGroups: [system:masters]
`

type evaluator struct {
	name string
	ours *policy.Policy
	k8s  auditinternal.PolicyRuleEvaluator
}

func evaluators(t *testing.T) []evaluator {
	files, err := filepath.Glob(filepath.Join(root, "examples", "audit-policy", "*.yaml"))
	if err != nil || len(files) < 6 {
		t.Fatalf("example policies: %v %v", files, err)
	}
	forms := filepath.Join(t.TempDir(), "forms.yaml")
	if err := os.WriteFile(forms, []byte(formsPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	files = append(files, forms)
	var out []evaluator
	for _, f := range files {
		ours, err := policy.Load(f)
		if err != nil {
			t.Fatal(err)
		}
		theirs, err := k8spolicy.LoadPolicyFromFile(f)
		if err != nil {
			t.Fatalf("kube-apiserver rejects %s: %v", f, err)
		}
		out = append(out, evaluator{filepath.Base(f), ours, k8spolicy.NewPolicyRuleEvaluator(theirs)})
	}
	return out
}

// attributes rebuilds, from an event decoded by encoding/json into a map
// (keys matched exactly, as audittail's parser and Kubernetes' decoder do),
// the authorizer attributes kube-apiserver evaluated its policy with: a
// field that is not a string is absent; the request is a resource request
// when objectRef has one of its string fields; the path is requestURI's
// (net/url), else requestURI up to '?'.
func attributes(m map[string]any) (authorizer.AttributesRecord, string) {
	str := func(m map[string]any, k string) (string, bool) {
		s, ok := m[k].(string)
		return s, ok
	}
	var a authorizer.AttributesRecord
	u := &user.DefaultInfo{}
	if um, ok := m["user"].(map[string]any); ok {
		u.Name, _ = str(um, "username")
		if gs, ok := um["groups"].([]any); ok {
			for _, g := range gs {
				if s, ok := g.(string); ok {
					u.Groups = append(u.Groups, s)
				}
			}
		}
	}
	a.User = u
	a.Verb, _ = str(m, "verb")
	if o, ok := m["objectRef"].(map[string]any); ok {
		for _, k := range []string{"resource", "namespace", "name", "apiGroup", "apiVersion", "subresource"} {
			if _, ok := str(o, k); ok {
				a.ResourceRequest = true
			}
		}
		a.Resource, _ = str(o, "resource")
		a.Namespace, _ = str(o, "namespace")
		a.Name, _ = str(o, "name")
		a.APIGroup, _ = str(o, "apiGroup")
		a.APIVersion, _ = str(o, "apiVersion")
		a.Subresource, _ = str(o, "subresource")
	}
	uri, _ := str(m, "requestURI")
	if pu, err := url.ParseRequestURI(uri); err == nil {
		a.Path = pu.Path
	} else {
		a.Path, _, _ = strings.Cut(uri, "?")
	}
	stage, _ := str(m, "stage")
	return a, stage
}

type stats struct {
	events  int
	byLevel map[string]int
}

// compare checks every evaluator on one event line.
func compare(t *testing.T, evs []evaluator, line []byte, st *stats) {
	t.Helper()
	var ev parser.Event
	if parser.Scan(line, &ev) != nil {
		return
	}
	var m map[string]any
	if json.Unmarshal(line, &m) != nil {
		return
	}
	attrs, stage := attributes(m)
	st.events++
	for _, e := range evs {
		d := e.ours.Decide(line, &ev)
		want := e.k8s.EvaluatePolicyRule(attrs)
		omit := slices.Contains(want.OmitStages, audit.Stage(stage))
		st.byLevel[e.name+" "+d.Level.String()]++
		if d.Level.String() != string(want.Level) || d.Omit != omit || d.OmitManagedFields != want.OmitManagedFields {
			t.Errorf("%s: audittail %+v, kube-apiserver level %s omit %v omitManagedFields %v\nattributes %+v\n%s",
				e.name, d, want.Level, omit, want.OmitManagedFields, attrs, line)
		}
	}
}

func TestDecideMatchesKubeAPIServer(t *testing.T) {
	evs := evaluators(t)
	st := &stats{byLevel: map[string]int{}}
	t.Run("the generated corpus", func(t *testing.T) {
		g := auditgen.New(42)
		ts := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
		for n := 0; n < 3000; n++ {
			compare(t, evs, g.Append(nil, auditgen.Level(n%3), ts), st)
			compare(t, evs, g.AppendMixed(nil, ts), st)
		}
	})
	t.Run("every real event", func(t *testing.T) {
		before := st.events
		files, _ := filepath.Glob(filepath.Join(root, "testdata", "real", "*"))
		for _, f := range files {
			if strings.HasSuffix(f, ".md") {
				continue
			}
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			sc := bufio.NewScanner(bytes.NewReader(data))
			sc.Buffer(nil, 1<<24)
			for sc.Scan() {
				compare(t, evs, sc.Bytes(), st)
			}
			// Pretty-printed files: the whole file as one event.
			compare(t, evs, data, st)
		}
		if st.events-before < 750 {
			t.Errorf("only %d real events", st.events-before)
		}
	})
	t.Run("a synthetic corpus reaching every rule form", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(1, 2))
		for n := 0; n < 20000; n++ {
			compare(t, evs, synthetic(rng), st)
		}
	})
	t.Logf("%d events; decisions: %v", st.events, st.byLevel)
}

func pick[T any](rng *rand.Rand, xs []T) T { return xs[rng.IntN(len(xs))] }

var (
	synUsers = []string{"kubernetes-admin", "system:kube-proxy", "system:unsecured", "kubelet", "system:node:n1",
		"system:kube-controller-manager", "system:apiserver", "cluster-autoscaler", "alice", `al\u0040ice`, "al@ice",
		"system:serviceaccount:kube-system:namespace-controller", "system:node-problem-detector", ""}
	synGroups = []string{"system:nodes", "system:masters", "system:authenticated", "system:serviceaccounts", "dev"}
	synVerbs  = []string{"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection", "post", "put"}
	synRes    = [][3]string{{"", "pods", ""}, {"", "pods", "exec"}, {"", "pods", "status"}, {"", "nodes", "status"}, {"", "nodes", ""},
		{"", "nodes", "proxy"}, {"", "secrets", ""}, {"", "configmaps", ""}, {"", "serviceaccounts", "token"}, {"", "endpoints", ""},
		{"", "services", "status"}, {"", "events", ""}, {"", "namespaces", "finalize"}, {"", "namespaces", ""},
		{"apps", "deployments", ""}, {"apps", "deployments", "scale"}, {"coordination.k8s.io", "leases", ""},
		{"authentication.k8s.io", "tokenreviews", ""}, {"metrics.k8s.io", "pods", ""}, {"example.com", "widgets", ""},
		{"example.com", "widgets", "status"}, {"events.k8s.io", "events", ""}, {"discovery.k8s.io", "endpointslices", ""},
		{"rbac.authorization.k8s.io", "clusterrolebindings", ""}, {"", "p\\u006fds", ""}}
	synNS    = []string{"", "kube-system", "default", "kube-node-lease"}
	synNames = []string{"", "x", "cfg", "n1"}
	synURLs  = []string{"/healthz", "/healthz/etcd", "/livez", "/readyz?verbose", "/version", "/version/", "/metrics",
		"/openapi/v2", "/swagger.json", "/logs/a%20b", "/logs/a b", "/apis", "/apis/apps", "/api/v1", "/", "/healthz%2Fx"}
	synStages = []string{"RequestReceived", "ResponseStarted", "ResponseComplete", "Panic"}
	synLevels = []string{"Metadata", "Request", "RequestResponse"}
)

// synthetic returns a random event line drawn from the lists above.
func synthetic(rng *rand.Rand) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":%q,"stage":%q,`, pick(rng, synLevels), pick(rng, synStages))
	var groups []string
	for _, g := range synGroups {
		if rng.IntN(3) == 0 {
			groups = append(groups, g)
		}
	}
	gj, _ := json.Marshal(groups)
	fmt.Fprintf(&b, `"verb":%q,"user":{"username":"%s","groups":%s},`, pick(rng, synVerbs), pick(rng, synUsers), gj)
	if rng.IntN(4) == 0 {
		fmt.Fprintf(&b, `"requestURI":%q}`, pick(rng, synURLs))
		return []byte(b.String())
	}
	r := pick(rng, synRes)
	ns, name := pick(rng, synNS), pick(rng, synNames)
	fmt.Fprintf(&b, `"requestURI":"/api/v1/%s","objectRef":{"resource":"%s"`, r[1], r[1])
	if ns != "" {
		fmt.Fprintf(&b, `,"namespace":%q`, ns)
	}
	if name != "" {
		fmt.Fprintf(&b, `,"name":%q`, name)
	}
	if r[0] != "" {
		fmt.Fprintf(&b, `,"apiGroup":%q`, r[0])
	}
	if r[2] != "" {
		fmt.Fprintf(&b, `,"subresource":%q`, r[2])
	}
	b.WriteString(`,"apiVersion":"v1"}}`)
	return []byte(b.String())
}
