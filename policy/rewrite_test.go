package policy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/audittail/audittail/parser"
	"github.com/audittail/audittail/parser/auditgen"
)

// decode decodes a JSON object as encoding/json does, numbers kept.
func decode(t testing.TB, b []byte) map[string]any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return m
}

// oracle does to the decoded event m what Rewrite should, the slow way.
// paths are the redaction paths that apply to the event (presets
// included); p nil skips the policy. It returns nil for a dropped event.
func oracle(m map[string]any, p *Policy, d Decision, paths [][]segment) map[string]any {
	policyChanged := false
	if p != nil {
		if d.Drop() {
			return nil
		}
		evLevel := RequestResponse
		ls, isStr := m["level"].(string)
		if l, ok := ParseLevel(ls); isStr && ok {
			evLevel = l
		}
		if d.Level < evLevel {
			if isStr {
				m["level"] = d.Level.String()
				policyChanged = true
			}
			if _, ok := m["requestObject"]; ok && d.Level < Request {
				delete(m, "requestObject")
				policyChanged = true
			}
			if _, ok := m["responseObject"]; ok && d.Level < RequestResponse {
				delete(m, "responseObject")
				policyChanged = true
			}
		}
		if d.OmitManagedFields {
			for _, k := range []string{"requestObject", "responseObject"} {
				o, _ := m[k].(map[string]any)
				if removeManagedFields(o) {
					policyChanged = true
				}
				items, _ := o["items"].([]any)
				for _, it := range items {
					io, _ := it.(map[string]any)
					if removeManagedFields(io) {
						policyChanged = true
					}
				}
			}
		}
	}
	for _, segs := range paths {
		refApply(m, segs)
	}
	if policyChanged {
		a, ok := m["annotations"].(map[string]any)
		if !ok {
			a = map[string]any{}
			m["annotations"] = a
		}
		a[AnnotationKey] = p.Name
	}
	return m
}

func removeManagedFields(o map[string]any) bool {
	md, ok := o["metadata"].(map[string]any)
	if !ok {
		return false
	}
	if _, ok := md["managedFields"]; !ok {
		return false
	}
	delete(md, "managedFields")
	return true
}

func refApply(v any, segs []segment) any {
	if len(segs) == 0 {
		return refMask(v)
	}
	switch sg, rest := segs[0], segs[1:]; sg.kind {
	case segKey:
		if m, ok := v.(map[string]any); ok {
			if x, ok := m[sg.key]; ok {
				m[sg.key] = refApply(x, rest)
			}
		}
	case segAnyKey:
		if m, ok := v.(map[string]any); ok {
			for k, x := range m {
				m[k] = refApply(x, rest)
			}
		}
	case segAll:
		if a, ok := v.([]any); ok {
			for k, x := range a {
				a[k] = refApply(x, rest)
			}
		}
	case segIndex:
		if a, ok := v.([]any); ok && sg.idx < len(a) {
			a[sg.idx] = refApply(a[sg.idx], rest)
		}
	}
	return v
}

func refMask(v any) any {
	switch x := v.(type) {
	case nil:
		return nil
	case map[string]any:
		for k, e := range x {
			x[k] = refMask(e)
		}
		return x
	case []any:
		for k, e := range x {
			x[k] = refMask(e)
		}
		return x
	}
	return "REDACTED"
}

// redactPaths returns the parsed paths of entries that apply to class c.
func redactPaths(t testing.TB, entries []string, c int) [][]segment {
	var out [][]segment
	for _, e := range entries {
		list := []string{e}
		if ps, ok := presets[e]; ok {
			list = ps[c]
		}
		for _, s := range list {
			p, err := ParsePath(s)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, p.segs)
		}
	}
	return out
}

// check runs Rewrite on line and compares with the oracle.
func check(t testing.TB, line []byte, p *Policy, d Decision, r *Redactor, entries []string) (out []byte, changed bool) {
	t.Helper()
	var ev parser.Event
	if err := parser.Scan(line, &ev); err != nil {
		t.Fatalf("%s: %v", line, err)
	}
	in := bytes.Clone(line)
	out, changed = Rewrite(nil, line, &ev, p, d, r)
	if !bytes.Equal(in, line) {
		t.Fatalf("the input line was changed")
	}
	var paths [][]segment
	if r != nil {
		paths = redactPaths(t, entries, r.class(&ev))
	}
	want := oracle(decode(t, line), p, d, paths)
	if want == nil {
		if out != nil || !changed {
			t.Fatalf("%s: want the event dropped, got %q (changed %v)", line, out, changed)
		}
		return
	}
	if !json.Valid(out) {
		t.Fatalf("invalid JSON out of\n%s\n%s", line, out)
	}
	if got := decode(t, out); !reflect.DeepEqual(got, want) {
		g, _ := json.Marshal(got)
		w, _ := json.Marshal(want)
		t.Fatalf("in   %s\ngot  %s\nwant %s", line, g, w)
	}
	if !changed && &out[0] != &line[0] {
		t.Fatalf("unchanged but not the line itself")
	}
	if changed && bytes.Equal(out, line) {
		t.Fatalf("changed but the same bytes: %s", out)
	}
	return out, changed
}

var levels = []Level{None, Metadata, Request, RequestResponse}

func TestApplyLevels(t *testing.T) {
	p := mustParse(t, header+"rules: [{level: Metadata}]\n")
	p.Name = "siem"
	g := auditgen.New(1)
	ts := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, evLevel := range []auditgen.Level{auditgen.Metadata, auditgen.Request, auditgen.RequestResponse} {
		for _, to := range levels {
			for n := 0; n < 50; n++ {
				line := g.Append(nil, evLevel, ts)
				out, changed := check(t, line, p, Decision{Level: to}, nil, nil)
				from, _ := ParseLevel(evLevel.String())
				switch {
				case to == None:
				case to >= from:
					if changed {
						t.Errorf("%s event at %s: changed", evLevel, to)
					}
				default:
					if !changed || !bytes.Contains(out, []byte(`"level":"`+to.String()+`"`)) || !bytes.Contains(out, []byte(`"audittail.io/policy":"siem"`)) {
						t.Errorf("%s event at %s: %s", evLevel, to, out)
					}
				}
			}
		}
	}
}

func TestApplyMembers(t *testing.T) {
	p := mustParse(t, header+"rules: [{level: Metadata}]\n")
	for _, c := range []struct {
		name, line string
		to         Level
		want       string
	}{
		{"removes both objects and adds the annotations", `{"level":"RequestResponse","requestObject":{"a":1},"responseObject":{"b":2}}`, Metadata,
			`{"level":"Metadata","annotations":{"audittail.io/policy":"test"}}`},
		{"removes the objects among others, commas kept right", `{"level":"RequestResponse","verb":"create","requestObject":{"a":1},"x":1,"responseObject":{"b":2},"annotations":{"k":"v"}}`, Metadata,
			`{"level":"Metadata","verb":"create","x":1,"annotations":{"k":"v","audittail.io/policy":"test"}}`},
		{"removes the first members", `{"requestObject":{},"responseObject":[],"level":"Request"}`, Metadata,
			`{"level":"Metadata","annotations":{"audittail.io/policy":"test"}}`},
		{"Request keeps the request object", `{"level":"RequestResponse","requestObject":{"a":1},"responseObject":{"b":2},"annotations":{}}`, Request,
			`{"level":"Request","requestObject":{"a":1},"annotations":{"audittail.io/policy":"test"}}`},
		{"sorted keys: annotations first", `{"annotations":{"a":"b"},"level":"Request","requestObject":{"a":1}}`, Metadata,
			`{"annotations":{"a":"b","audittail.io/policy":"test"},"level":"Metadata"}`},
		{"annotations null becomes an object", `{"annotations":null,"level":"Request","requestObject":{"a":1}}`, Metadata,
			`{"annotations":{"audittail.io/policy":"test"},"level":"Metadata"}`},
		{"only the removed member", `{"requestObject":{"a":1}}`, Metadata,
			`{"annotations":{"audittail.io/policy":"test"}}`},
		{"a policy annotation there already is replaced (last)", `{"level":"Request","requestObject":{"a":1},"annotations":{"k":"v","audittail.io/policy":"upstream"}}`, Metadata,
			`{"level":"Metadata","annotations":{"k":"v","audittail.io/policy":"test"}}`},
		{"a policy annotation there already is replaced (first)", `{"level":"Request","requestObject":{"a":1},"annotations":{ "audittail.io/policy" : "upstream" , "k":"v"}}`, Metadata,
			`{"level":"Metadata","annotations":{ "k":"v","audittail.io/policy":"test"}}`},
		{"a policy annotation there already is replaced (alone, escaped key)", `{"level":"Request","requestObject":{"a":1},"annotations":{"audittail.io\/policy":"upstream"}}`, Metadata,
			`{"level":"Metadata","annotations":{"audittail.io/policy":"test"}}`},
		{"a policy annotation there already is replaced (middle)", `{"annotations":{"a":"1","audittail.io/policy":"x","b":"2"},"level":"Request","requestObject":{}}`, Metadata,
			`{"annotations":{"a":"1","b":"2","audittail.io/policy":"test"},"level":"Metadata"}`},
		{"whitespace", "{ \"level\" : \"RequestResponse\" ,\n \"responseObject\" : { \"b\" : 2 } ,\n \"verb\":\"get\" }\n", Request,
			"{ \"level\" : \"Request\" ,\n \"verb\":\"get\" ,\"annotations\":{\"audittail.io/policy\":\"test\"}}\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, _ := check(t, []byte(c.line), p, Decision{Level: c.to}, nil, nil)
			if string(out) != c.want {
				t.Errorf("got  %s\nwant %s", out, c.want)
			}
		})
	}
}

func TestApplyManagedFields(t *testing.T) {
	mf := `"managedFields":[{"manager":"kubectl","operation":"Update","fieldsV1":{"f:data":{}}}]`
	line := []byte(`{"level":"RequestResponse","verb":"update","user":{"username":"alice"},"objectRef":{"resource":"configmaps","namespace":"x","name":"c"},` +
		`"requestObject":{"kind":"ConfigMap","metadata":{"name":"c",` + mf + `},"data":{"k":"v"}},` +
		`"responseObject":{"kind":"ConfigMapList","items":[{"metadata":{` + mf + `,"name":"c"}},{"metadata":{"name":"d"}}]}}`)
	for _, c := range []struct {
		name   string
		policy string
		want   bool
	}{
		{"the policy's omitManagedFields", "omitManagedFields: true\nrules: [{level: RequestResponse}]\n", true},
		{"a rule's omitManagedFields", "rules: [{level: RequestResponse, omitManagedFields: true}]\n", true},
		{"a rule's false over the policy's true", "omitManagedFields: true\nrules: [{level: RequestResponse, omitManagedFields: false}]\n", false},
		{"none", "rules: [{level: RequestResponse}]\n", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := mustParse(t, header+c.policy)
			d := decide(t, p, line)
			out, changed := check(t, line, p, d, nil, nil)
			if changed != c.want || bytes.Contains(out, []byte("managedFields")) != !c.want {
				t.Errorf("changed %v: %s", changed, out)
			}
		})
	}
	t.Run("an object without managedFields is not changed", func(t *testing.T) {
		p := mustParse(t, header+"omitManagedFields: true\nrules: [{level: RequestResponse}]\n")
		l := []byte(`{"level":"RequestResponse","requestObject":{"metadata":{"name":"c"}}}`)
		if _, changed := check(t, l, p, decide(t, p, l), nil, nil); changed {
			t.Error("changed")
		}
	})
}

// secretCreate is a Secret create as kube-apiserver logs it at
// RequestResponse, with kubectl apply's annotation.
const secretCreate = `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"6c3a2f1e-1111-4a2b-9a6d-0f1e2d3c4b5a","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/secrets?fieldManager=kubectl-client-side-apply","verb":"create","user":{"username":"kubernetes-admin","groups":["system:masters","system:authenticated"]},"sourceIPs":["10.0.0.1"],"userAgent":"kubectl/v1.31.2","objectRef":{"resource":"secrets","namespace":"default","name":"db","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":201},` +
	`"requestObject":{"kind":"Secret","apiVersion":"v1","metadata":{"name":"db","namespace":"default","creationTimestamp":null,"annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{\"apiVersion\":\"v1\",\"data\":{\"password\":\"aHVudGVyMg==\"},\"kind\":\"Secret\",\"metadata\":{\"annotations\":{},\"name\":\"db\",\"namespace\":\"default\"},\"stringData\":{\"user\":\"admin\"}}\n","team":"db"}},"data":{"password":"aHVudGVyMg=="},"stringData":{"user":"admin"},"type":"Opaque"},` +
	`"responseObject":{"kind":"Secret","apiVersion":"v1","metadata":{"name":"db","namespace":"default","uid":"0f1e2d3c","resourceVersion":"1234","creationTimestamp":"2025-01-02T03:04:05Z","annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{\"apiVersion\":\"v1\"}\n"}},"data":{"password":"aHVudGVyMg==","user":"YWRtaW4="},"type":"Opaque"},` +
	`"requestReceivedTimestamp":"2025-01-02T03:04:05.000000Z","stageTimestamp":"2025-01-02T03:04:05.010000Z","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":""}}` + "\n"

func TestRedactSecret(t *testing.T) {
	r, err := NewRedactor([]string{PresetSecrets})
	if err != nil {
		t.Fatal(err)
	}
	line := []byte(secretCreate)
	out, changed := check(t, line, nil, Decision{}, r, []string{PresetSecrets})
	if !changed {
		t.Fatal("not changed")
	}
	for _, secret := range []string{"aHVudGVyMg==", "YWRtaW4=", `\"password\"`, `"user":"admin"`} {
		if bytes.Contains(out, []byte(secret)) {
			t.Errorf("%s is still in %s", secret, out)
		}
	}
	// Every value masked, keys kept; the rest as it was, byte for byte.
	got := decode(t, out)
	want := decode(t, line)
	for _, k := range []string{"requestObject", "responseObject"} {
		o := want[k].(map[string]any)
		for _, f := range []string{"data", "stringData"} {
			if d, ok := o[f].(map[string]any); ok {
				for dk := range d {
					d[dk] = "REDACTED"
				}
			}
		}
		o["metadata"].(map[string]any)["annotations"].(map[string]any)["kubectl.kubernetes.io/last-applied-configuration"] = "REDACTED"
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %s", out)
	}
	if n := bytes.Count(out, []byte(`"REDACTED"`)); n != 6 {
		t.Errorf("%d values masked, want 6: %s", n, out)
	}
	if !bytes.Contains(out, []byte(`"team":"db"`)) || !bytes.HasSuffix(out, []byte(`"authorization.k8s.io/reason":""}}`+"\n")) {
		t.Errorf("other fields changed: %s", out)
	}
	t.Run("a ConfigMap is not a Secret", func(t *testing.T) {
		l := bytes.Replace(line, []byte(`"resource":"secrets"`), []byte(`"resource":"configmaps"`), 1)
		if _, changed := check(t, l, nil, Decision{}, r, []string{PresetSecrets}); changed {
			t.Error("changed")
		}
	})
	t.Run("the falco create_secret event", func(t *testing.T) {
		for _, l := range realLines(t, "falcosecurity__falco__test__trace_files__k8s_audit__create_secret.json") {
			out, changed := check(t, l, nil, Decision{}, r, []string{PresetSecrets})
			if !changed || !bytes.Contains(out, []byte(`"REDACTED"`)) {
				t.Errorf("not masked: %s", out)
			}
		}
	})
	t.Run("with a policy cut in the same pass", func(t *testing.T) {
		p := mustParse(t, header+"rules: [{level: Request}]\n")
		out, _ := check(t, line, p, Decision{Level: Request}, r, []string{PresetSecrets})
		if bytes.Contains(out, []byte("responseObject")) || !bytes.Contains(out, []byte(`"password":"REDACTED"`)) {
			t.Errorf("%s", out)
		}
	})
}

func TestRedactTokens(t *testing.T) {
	r, err := NewRedactor([]string{PresetTokens})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, line, secret string }{
		{"a TokenReview's spec.token", `{"level":"RequestResponse","objectRef":{"resource":"tokenreviews","apiGroup":"authentication.k8s.io","apiVersion":"v1"},"requestObject":{"kind":"TokenReview","spec":{"token":"eyJhbGciOi.secret","audiences":["api"]}},"responseObject":{"kind":"TokenReview","spec":{"token":"eyJhbGciOi.secret"},"status":{"authenticated":true,"user":{"username":"bob"}}}}`, "eyJhbGciOi"},
		{"a TokenRequest's status.token", `{"level":"RequestResponse","objectRef":{"resource":"serviceaccounts","subresource":"token","namespace":"x","name":"default","apiVersion":"v1"},"requestObject":{"kind":"TokenRequest","spec":{"audiences":["api"],"expirationSeconds":3600}},"responseObject":{"kind":"TokenRequest","spec":{"audiences":["api"]},"status":{"token":"eyJhbGciOi.issued","expirationTimestamp":"2025-01-02T04:04:05Z"}}}`, "eyJhbGciOi"},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, changed := check(t, []byte(c.line), nil, Decision{}, r, []string{PresetTokens})
			if !changed || bytes.Contains(out, []byte(c.secret)) {
				t.Errorf("%s", out)
			}
		})
	}
}

func TestRedactPaths(t *testing.T) {
	entries := []string{"requestObject.spec.containers[*].env[*].value", `annotations["x.io/secret"]`, "requestObject.spec.tokens", "user.extra.*", "responseObject.items[1]"}
	r, err := NewRedactor(entries)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		`{"level":"Request","verb":"create","requestObject":{"spec":{"containers":[{"name":"a","env":[{"name":"A","value":"s1"},{"name":"B","valueFrom":{}}]},{"name":"b","env":[{"name":"C","value":"s2"}]}]}}}`,
		`{"level":"Request","annotations":{"x.io/secret":"s","y":"n"},"user":{"username":"u","extra":{"a":["1","2"],"b":null}}}`,
		`{"level":"Request","requestObject":{"spec":{"tokens":{"a":1,"b":[true,{"c":"x"}],"n":null}}}}`,
		`{"level":"Request","responseObject":{"items":[1,{"x":"y"},3]}}`,
		`{"level":"Request","requestObject":{"sp\u0065c":{"tokens":"escaped key"}}}`,
	} {
		out, changed := check(t, []byte(line), nil, Decision{}, r, entries)
		if !changed {
			t.Errorf("not changed: %s", out)
		}
	}
	t.Run("an event without the fields is not changed", func(t *testing.T) {
		for _, l := range []string{
			`{"level":"Request","requestObject":{"spec":{"x":1}}}`,
			`{"level":"Request","requestObject":{"spec":{"containers":"weird"}}}`,
			`{"level":"Request","requestObject":{"spec":{"containers":[{"env":"x"}]}},"annotations":{"a":"h\u00e9llo \u003cworld\u003e"}}`,
		} {
			if _, changed := check(t, []byte(l), nil, Decision{}, r, entries); changed {
				t.Errorf("changed: %s", l)
			}
		}
	})
}

func TestParsePath(t *testing.T) {
	for _, c := range []struct{ in, err string }{
		{"requestObject.spec.containers[*].env[*].value", ""},
		{`requestObject.metadata.annotations["a.b/c"]`, ""},
		{"responseObject.items[0].data.*", ""},
		{"", "empty path"},
		{"a..b", `path "a..b": offset 1: empty field name`},
		{".a", `path ".a": offset 0: empty field name`},
		{"a.", `path "a.": offset 1: empty field name`},
		{"a[x]", `path "a[x]": offset 1: bad segment "[x]"`},
		{"a[-1]", `path "a[-1]": offset 1: bad segment "[-1]"`},
		{"a[*", `path "a[*": offset 1: unterminated segment "[*"`},
		{`a["b]`, `path "a[\"b]": offset 1: bad segment`},
		{"a]b", `path "a]b": offset 1: unexpected ]`},
		{"a[*]b", `path "a[*]b": offset 4: bad segment "b" (a name must follow a dot)`},
		{"[*].a", `path "[*].a": offset 0: a path starts with a field`},
		{`a.b"c`, `path "a.b\"c": offset 2: bad segment "b\"c"`},
	} {
		_, err := ParsePath(c.in)
		if c.err == "" && err != nil || c.err != "" && (err == nil || !strings.HasPrefix(err.Error(), c.err)) {
			t.Errorf("ParsePath(%q): %v, want %q", c.in, err, c.err)
		}
	}
	if _, err := NewRedactor([]string{"secrets", "secret"}); err == nil || err.Error() != `redact[1]: unknown preset "secret" (want secrets, tokens or a field path)` {
		t.Errorf("%v", err)
	}
	if _, err := NewRedactor([]string{"a..b"}); err == nil || !strings.HasPrefix(err.Error(), "redact[0]: path") {
		t.Errorf("%v", err)
	}
}

// realLines returns the lines of a file in testdata/real that parse as
// events.
func realLines(t testing.TB, name string) [][]byte {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "testdata", "real", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out [][]byte
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<24)
	var ev parser.Event
	for sc.Scan() {
		l := bytes.Clone(sc.Bytes())
		if parser.Scan(l, &ev) == nil && json.Valid(l) {
			out = append(out, l)
		}
	}
	return out
}

// allReal returns every event line of testdata/real.
func allReal(t testing.TB) [][]byte {
	files, err := filepath.Glob(filepath.Join("..", "testdata", "real", "*"))
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, f := range files {
		if strings.HasSuffix(f, ".md") {
			continue
		}
		out = append(out, realLines(t, filepath.Base(f))...)
	}
	return out
}

func TestRewriteRealEvents(t *testing.T) {
	entries := []string{PresetSecrets, PresetTokens, "requestObject.spec.containers[*].env[*].value", "annotations.*"}
	r, err := NewRedactor(entries)
	if err != nil {
		t.Fatal(err)
	}
	p := mustParse(t, header+"omitManagedFields: true\nrules: [{level: Metadata}]\n")
	lines := allReal(t)
	if len(lines) < 700 {
		t.Fatalf("%d real events", len(lines))
	}
	for _, l := range lines {
		for _, lv := range levels {
			for _, mf := range []bool{false, true} {
				check(t, l, p, Decision{Level: lv, OmitManagedFields: mf}, r, entries)
				check(t, l, p, Decision{Level: lv, OmitManagedFields: mf}, nil, nil)
			}
		}
	}
}

func TestRewriteAllocs(t *testing.T) {
	p := mustParse(t, header+"omitStages: [RequestReceived]\nomitManagedFields: true\nrules: [{level: None, verbs: [watch]}, {level: RequestResponse}]\n")
	r, err := NewRedactor([]string{PresetSecrets, PresetTokens, "requestObject.spec.containers[*].env[*].value"})
	if err != nil {
		t.Fatal(err)
	}
	g := auditgen.New(7)
	ts := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	var ev parser.Event
	var buf []byte
	kept, dropped, rewritten := 0, 0, 0
	for n := 0; n < 400; n++ {
		line := g.AppendMixed(nil, ts)
		if err := parser.Scan(line, &ev); err != nil {
			t.Fatal(err)
		}
		d := p.Decide(line, &ev)
		out, changed := Rewrite(buf, line, &ev, p, d, r)
		switch {
		case out == nil:
			dropped++
		case changed:
			rewritten++
			buf = out
			continue
		default:
			kept++
		}
		if a := testing.AllocsPerRun(20, func() {
			d := p.Decide(line, &ev)
			Rewrite(buf, line, &ev, p, d, r)
		}); a != 0 {
			t.Fatalf("%v allocations for %s", a, line)
		}
	}
	if kept == 0 || dropped == 0 {
		t.Errorf("kept %d dropped %d rewritten %d", kept, dropped, rewritten)
	}
}
