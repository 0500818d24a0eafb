package policy

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/audittail/audittail/parser"
)

// req describes the request an event records; line builds the event.
type req struct {
	user    string
	groups  []string
	verb    string
	stage   string
	level   string
	ns      string
	group   string
	res     string // "pods" or "pods/exec"
	name    string
	uri     string // a non-resource request when res is ""
	rawUser string // username as raw JSON (with escapes), overrides user
}

func (r req) line() []byte {
	stage := r.stage
	if stage == "" {
		stage = "ResponseComplete"
	}
	level := r.level
	if level == "" {
		level = "Metadata"
	}
	verb := r.verb
	if verb == "" {
		verb = "get"
	}
	m := map[string]any{
		"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": level,
		"auditID": "5b0b4f1a-7d2c-4d63-9f0e-0a1b2c3d4e5f", "stage": stage,
		"verb": verb, "user": map[string]any{"username": r.user, "groups": r.groups},
	}
	if r.res != "" {
		res, sub, _ := strings.Cut(r.res, "/")
		ref := map[string]any{"resource": res, "apiVersion": "v1"}
		if sub != "" {
			ref["subresource"] = sub
		}
		if r.ns != "" {
			ref["namespace"] = r.ns
		}
		if r.group != "" {
			ref["apiGroup"] = r.group
		}
		if r.name != "" {
			ref["name"] = r.name
		}
		m["objectRef"] = ref
		if r.uri == "" {
			r.uri = "/api/v1/" + res
		}
	}
	m["requestURI"] = r.uri
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	if r.rawUser != "" {
		b = []byte(strings.Replace(string(b), `"username":""`, `"username":"`+r.rawUser+`"`, 1))
	}
	return b
}

func mustParse(t testing.TB, yml string) *Policy {
	t.Helper()
	p, err := Parse("test.yaml", []byte(yml))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func decide(t testing.TB, p *Policy, line []byte) Decision {
	t.Helper()
	var ev parser.Event
	if err := parser.Scan(line, &ev); err != nil {
		t.Fatalf("%s: %v", line, err)
	}
	return p.Decide(line, &ev)
}

const header = "apiVersion: audit.k8s.io/v1\nkind: Policy\n"

var (
	alice   = req{user: "alice", groups: []string{"dev", "system:authenticated"}}
	kubelet = req{user: "system:node:n1", groups: []string{"system:nodes", "system:authenticated"}}
)

func (r req) do(verb, group, res, ns string) req {
	r.verb, r.group, r.res, r.ns = verb, group, res, ns
	return r
}

func (r req) get(uri string) req {
	r.verb, r.uri = "get", uri
	return r
}

func TestDecideRuleFields(t *testing.T) {
	for _, c := range []struct {
		name  string
		rules string
		req   req
		want  Level // the first rule is at Request, the fallback at Metadata
	}{
		{"users: a listed user matches", `users: [alice]`, alice.do("get", "", "pods", "default"), Request},
		{"users: another user does not", `users: [bob]`, alice.do("get", "", "pods", "default"), Metadata},
		{"users: the name with escapes is decoded", `users: ["al@ice"]`, req{rawUser: `al\u0040ice`}.do("get", "", "pods", "default"), Request},
		{"userGroups: one group in common matches", `userGroups: [system:nodes, other]`, kubelet.do("get", "", "pods", ""), Request},
		{"userGroups: no group in common does not", `userGroups: [system:nodes]`, alice.do("get", "", "pods", ""), Metadata},
		{"userGroups: a user without groups does not", `userGroups: [system:nodes]`, req{user: "x"}.do("get", "", "pods", ""), Metadata},
		{"verbs: a listed verb matches", `verbs: [create, update]`, alice.do("update", "", "pods", "default"), Request},
		{"verbs: another verb does not", `verbs: [create, update]`, alice.do("get", "", "pods", "default"), Metadata},
		{"resources: group and resource", `resources: [{group: apps, resources: [deployments]}]`, alice.do("create", "apps", "deployments", "default"), Request},
		{"resources: the core group is not apps", `resources: [{group: "", resources: [deployments]}]`, alice.do("create", "apps", "deployments", "default"), Metadata},
		{"resources: group alone matches all its resources", `resources: [{group: apps}]`, alice.do("create", "apps", "statefulsets", "default"), Request},
		{"resources: group * matches every group", `resources: [{group: "*", resources: [leases]}]`, alice.do("get", "coordination.k8s.io", "leases", "x"), Request},
		{"resources: * matches a resource", `resources: [{resources: ["*"]}]`, alice.do("get", "", "pods", "x"), Request},
		{"resources: * matches a subresource", `resources: [{resources: ["*"]}]`, alice.do("get", "", "pods/log", "x"), Request},
		{"resources: a resource does not match its subresource", `resources: [{resources: [pods]}]`, alice.do("create", "", "pods/exec", "x"), Metadata},
		{"resources: resource/subresource matches", `resources: [{resources: [pods/exec]}]`, alice.do("create", "", "pods/exec", "x"), Request},
		{"resources: resource/subresource does not match the resource", `resources: [{resources: [pods/exec]}]`, alice.do("create", "", "pods", "x"), Metadata},
		{"resources: */subresource matches any resource's", `resources: [{resources: ["*/status"]}]`, alice.do("update", "", "nodes/status", ""), Request},
		{"resources: */subresource does not match the resource", `resources: [{resources: ["*/status"]}]`, alice.do("update", "", "nodes", ""), Metadata},
		{"resources: resource/* matches a subresource", `resources: [{resources: ["pods/*"]}]`, alice.do("get", "", "pods/log", "x"), Request},
		{"resources: resource/* matches the resource itself", `resources: [{resources: ["pods/*"]}]`, alice.do("get", "", "pods", "x"), Request},
		{"resources: resource/* does not match another", `resources: [{resources: ["pods/*"]}]`, alice.do("get", "", "nodes/proxy", ""), Metadata},
		{"resourceNames: a listed name matches", `resources: [{resources: [configmaps], resourceNames: [cfg]}]`, func() req { r := alice.do("get", "", "configmaps", "x"); r.name = "cfg"; return r }(), Request},
		{"resourceNames: another name does not", `resources: [{resources: [configmaps], resourceNames: [cfg]}]`, func() req { r := alice.do("get", "", "configmaps", "x"); r.name = "other"; return r }(), Metadata},
		{"resourceNames: a list (no name) does not", `resources: [{resources: [configmaps], resourceNames: [cfg]}]`, alice.do("list", "", "configmaps", "x"), Metadata},
		{"resources: a resource rule does not match a non-resource request", `resources: [{resources: ["*"]}]`, alice.get("/healthz"), Metadata},
		{"namespaces: a listed namespace matches", `namespaces: [kube-system]`, alice.do("get", "", "pods", "kube-system"), Request},
		{"namespaces: another does not", `namespaces: [kube-system]`, alice.do("get", "", "pods", "default"), Metadata},
		{"namespaces: a cluster-scoped resource does not", `namespaces: [kube-system]`, alice.do("get", "", "nodes", ""), Metadata},
		{"namespaces: \"\" matches cluster-scoped resources", `namespaces: [""]`, alice.do("get", "", "nodes", ""), Request},
		{"namespaces: never a non-resource request", `namespaces: [""]`, alice.get("/metrics"), Metadata},
		{"nonResourceURLs: an exact path", `nonResourceURLs: [/version]`, alice.get("/version"), Request},
		{"nonResourceURLs: the query is not part of the path", `nonResourceURLs: [/version]`, alice.get("/version?timeout=32s"), Request},
		{"nonResourceURLs: exact is exact", `nonResourceURLs: [/version]`, alice.get("/version/x"), Metadata},
		{"nonResourceURLs: trailing * is a prefix", `nonResourceURLs: ["/healthz*"]`, alice.get("/healthz/etcd"), Request},
		{"nonResourceURLs: trailing * matches the prefix itself", `nonResourceURLs: ["/healthz*"]`, alice.get("/healthz"), Request},
		{"nonResourceURLs: trailing * after a slash", `nonResourceURLs: ["/apis/*"]`, alice.get("/apis/apps"), Request},
		{"nonResourceURLs: trailing * after a slash needs the slash", `nonResourceURLs: ["/apis/*"]`, alice.get("/apis"), Metadata},
		{"nonResourceURLs: * matches every path", `nonResourceURLs: ["*"]`, alice.get("/logs/x"), Request},
		{"nonResourceURLs: the path is percent-decoded", `nonResourceURLs: ["/logs/a b"]`, alice.get("/logs/a%20b"), Request},
		{"nonResourceURLs: never a resource request", `nonResourceURLs: ["*"]`, alice.do("get", "", "pods", "x"), Metadata},
		{"an empty rule matches resource requests", `{}`, alice.do("get", "", "pods", "x"), Request},
		{"an empty rule matches non-resource requests", `{}`, alice.get("/version"), Request},
		{"users alone match non-resource requests", `users: [alice]`, alice.get("/version"), Request},
		{"all fields must match", `{users: [alice], verbs: [get], resources: [{resources: [pods]}], namespaces: [x]}`, alice.do("get", "", "pods", "y"), Metadata},
	} {
		t.Run(c.name, func(t *testing.T) {
			rules := c.rules
			if rules[0] != '{' {
				rules = "{" + rules + "}"
			}
			rules = strings.TrimSuffix(strings.TrimPrefix(rules, "{"), "}")
			yml := header + "rules:\n  - {level: Request"
			if strings.TrimSpace(rules) != "" {
				yml += ", " + rules
			}
			yml += "}\n  - level: Metadata\n"
			p := mustParse(t, yml)
			line := c.req.line()
			d := decide(t, p, line)
			if d.Level != c.want {
				t.Errorf("%s\n%s: level %s, want %s", yml, line, d.Level, c.want)
			}
			if want := map[Level]int{Request: 0, Metadata: 1}[c.want]; d.Rule != want {
				t.Errorf("rule %d, want %d", d.Rule, want)
			}
		})
	}
}

func TestDecideOrderAndDefaults(t *testing.T) {
	p := mustParse(t, header+`
omitStages: [RequestReceived]
rules:
  - level: None
    users: [alice]
  - level: RequestResponse
    verbs: [create]
    omitStages: [ResponseStarted]
  - level: Metadata
    verbs: [create]
`)
	t.Run("the first matching rule wins", func(t *testing.T) {
		if d := decide(t, p, alice.do("create", "", "pods", "x").line()); d.Level != None || d.Rule != 0 || !d.Drop() {
			t.Errorf("%+v", d)
		}
		if d := decide(t, p, kubelet.do("create", "", "pods", "x").line()); d.Level != RequestResponse || d.Rule != 1 {
			t.Errorf("%+v", d)
		}
	})
	t.Run("no rule matching is level None", func(t *testing.T) {
		if d := decide(t, p, kubelet.do("get", "", "pods", "x").line()); d.Level != None || d.Rule != -1 || !d.Drop() {
			t.Errorf("%+v", d)
		}
	})
	t.Run("omitStages is the union of the policy's and the rule's", func(t *testing.T) {
		for stage, omit := range map[string]bool{"RequestReceived": true, "ResponseStarted": true, "ResponseComplete": false, "Panic": false} {
			r := kubelet.do("create", "", "pods", "x")
			r.stage = stage
			if d := decide(t, p, r.line()); d.Omit != omit || d.Drop() != omit {
				t.Errorf("stage %s: %+v, want omit %v", stage, d, omit)
			}
		}
	})
	t.Run("a rule without omitStages has the policy's", func(t *testing.T) {
		p := mustParse(t, header+"omitStages: [RequestReceived]\nrules: [{level: Metadata}]\n")
		r := kubelet.do("create", "", "pods", "x")
		r.stage = "RequestReceived"
		if d := decide(t, p, r.line()); !d.Omit {
			t.Errorf("%+v", d)
		}
		r.stage = "ResponseStarted"
		if d := decide(t, p, r.line()); d.Omit {
			t.Errorf("%+v", d)
		}
	})
}

func TestDecideOmitManagedFields(t *testing.T) {
	for _, c := range []struct {
		name   string
		policy string
		rule   string
		want   bool
	}{
		{"off by default", "", "", false},
		{"the policy's applies to a rule without one", "omitManagedFields: true\n", "", true},
		{"a rule's true overrides the policy's false", "omitManagedFields: false\n", ", omitManagedFields: true", true},
		{"a rule's false overrides the policy's true", "omitManagedFields: true\n", ", omitManagedFields: false", false},
		{"a rule's true with the policy unset", "", ", omitManagedFields: true", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := mustParse(t, header+c.policy+"rules:\n  - {level: Request, verbs: [create]"+c.rule+"}\n")
			if d := decide(t, p, alice.do("create", "", "pods", "x").line()); d.OmitManagedFields != c.want {
				t.Errorf("%+v, want OmitManagedFields %v", d, c.want)
			}
		})
	}
	t.Run("no rule matching has the policy's", func(t *testing.T) {
		p := mustParse(t, header+"omitManagedFields: true\nrules: [{level: Request, verbs: [create]}]\n")
		if d := decide(t, p, alice.do("get", "", "pods", "x").line()); !d.OmitManagedFields || d.Rule != -1 {
			t.Errorf("%+v", d)
		}
	})
}

func TestParseErrors(t *testing.T) {
	for _, c := range []struct {
		name, yml, want string
	}{
		{"an unknown top-level field", header + "rules: [{level: None}]\nomitStage: [Panic]\n", "test.yaml: omitStage: unknown field (line 4)"},
		{"an unknown rule field", header + "rules:\n  - level: None\n  - level: None\n    user: [x]\n", "test.yaml: rules[1].user: unknown field (line 6)"},
		{"an unknown resources field", header + "rules:\n  - level: None\n    resources:\n      - groups: [x]\n", "test.yaml: rules[0].resources[0].groups: unknown field"},
		{"a field spelt in another case", header + "rules: [{Level: None}]\n", "test.yaml: rules[0].Level: unknown field"},
		{"a bad group", header + "rules:\n  - level: None\n  - level: None\n  - level: None\n  - level: None\n    resources:\n      - group: apps/v1\n", "test.yaml: rules[3].resources[0].group: invalid group \"apps/v1\""},
		{"a bad level", header + "rules: [{level: Everything}]\n", "test.yaml: rules[0].level: unsupported level \"Everything\""},
		{"no level", header + "rules: [{verbs: [get]}]\n", "test.yaml: rules[0].level: required"},
		{"a bad stage", header + "omitStages: [Done]\nrules: [{level: None}]\n", "test.yaml: omitStages[0]: unsupported stage \"Done\""},
		{"a bad rule stage", header + "rules: [{level: None, omitStages: [ResponseComplete, X]}]\n", "test.yaml: rules[0].omitStages[1]: unsupported stage \"X\""},
		{"resourceNames without resources", header + "rules: [{level: None, resources: [{group: apps, resourceNames: [x]}]}]\n", "test.yaml: rules[0].resources[0].resourceNames: using resourceNames requires at least one resource"},
		{"URLs mixed with resources", header + "rules: [{level: None, nonResourceURLs: [/x], namespaces: [y]}]\n", "test.yaml: rules[0].nonResourceURLs: rules cannot apply to both"},
		{"a URL without a slash", header + "rules: [{level: None, nonResourceURLs: [/x, healthz]}]\n", "test.yaml: rules[0].nonResourceURLs[1]: \"healthz\": non-resource URL rules must begin with a '/'"},
		{"a * inside a URL", header + "rules: [{level: None, nonResourceURLs: [/x*/y]}]\n", "test.yaml: rules[0].nonResourceURLs[0]: \"/x*/y\": non-resource URL wildcards"},
		{"a number for a string", header + "rules: [{level: None, users: [1]}]\n", "test.yaml: rules[0].users[0]: want a string, got 1"},
		{"a string for a list", header + "rules: [{level: None, verbs: get}]\n", "test.yaml: rules[0].verbs: want a list of strings"},
		{"a string for a bool", header + "omitManagedFields: \"yes\"\nrules: [{level: None}]\n", "test.yaml: omitManagedFields: want true or false"},
		{"a duplicate key", header + "rules: [{level: None, level: Metadata}]\n", "test.yaml: rules[0].level: duplicate key"},
		{"another apiVersion", "apiVersion: audit.k8s.io/v1beta1\nkind: Policy\nrules: [{level: None}]\n", "test.yaml: apiVersion: \"audit.k8s.io/v1beta1\" is not supported"},
		{"no apiVersion", "kind: Policy\nrules: [{level: None}]\n", "test.yaml: apiVersion: \"\" is not supported"},
		{"another kind", "apiVersion: audit.k8s.io/v1\nkind: Event\nrules: [{level: None}]\n", "test.yaml: kind: \"Event\" is not supported"},
		{"no rules", header + "omitStages: [Panic]\n", "test.yaml: rules: a policy needs at least one rule"},
		{"an empty file", "", "test.yaml: the policy is empty"},
		{"not an object", "[1]", "test.yaml: want a Policy object"},
		{"a YAML syntax error", "rules: [", "test.yaml: "},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("test.yaml", []byte(c.yml))
			if err == nil || !strings.HasPrefix(err.Error(), c.want) {
				t.Errorf("error %v, want it to start with %q", err, c.want)
			}
		})
	}
}

func TestParse(t *testing.T) {
	t.Run("reads JSON", func(t *testing.T) {
		p, err := Parse("p.json", []byte(`{"apiVersion":"audit.k8s.io/v1","kind":"Policy","metadata":{"name":"x"},"omitStages":["RequestReceived"],"rules":[{"level":"Metadata","resources":[{"group":"","resources":["pods"]}],"omitManagedFields":true}]}`))
		if err != nil {
			t.Fatal(err)
		}
		if p.Name != "p" || len(p.Rules) != 1 || p.Rules[0].Level != Metadata || *p.Rules[0].OmitManagedFields != true || p.OmitStages[0] != RequestReceived {
			t.Errorf("%+v", p)
		}
	})
	t.Run("Load names the file", func(t *testing.T) {
		dir := t.TempDir()
		f := filepath.Join(dir, "siem.yaml")
		if err := os.WriteFile(f, []byte(header+"rules: [{level: Bad}]\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(f); err == nil || !strings.HasPrefix(err.Error(), f+": rules[0].level:") {
			t.Errorf("error %v", err)
		}
		if _, err := Load(filepath.Join(dir, "missing.yaml")); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
			t.Errorf("error %v", err)
		}
	})
}

func TestVerbBit(t *testing.T) {
	seen := uint16(0)
	for i, v := range knownVerbs {
		if got := verbBit([]byte(v)); got != 1<<i {
			t.Errorf("verbBit(%q) = %b, want %b", v, got, 1<<i)
		}
		seen |= 1 << i
	}
	for _, v := range []string{"", "GET", "gets", "escalate", "impersonate", "bind"} {
		if got := verbBit([]byte(v)); got != 0 {
			t.Errorf("verbBit(%q) = %b, want 0", v, got)
		}
	}
}
