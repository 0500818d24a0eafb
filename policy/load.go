package policy

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// Load reads an audit policy file (YAML or JSON) and parses it with Parse,
// the file's base name (without extension) becoming the policy's Name.
func Load(path string) (*Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read audit policy: %w", err)
	}
	p, err := Parse(path, data)
	if err != nil {
		return nil, err
	}
	return p, nil
}

// Parse decodes an audit.k8s.io/v1 Policy (YAML or JSON, as kube-apiserver
// reads --audit-policy-file) strictly and validates it as kube-apiserver
// does. name is used in errors and, base name without extension, as the
// policy's Name. Unknown and duplicate keys, values of the wrong type and
// invalid values are errors that name the file, the field path and the
// line: `policy.yaml: rules[3].resources[0].group: ... (line 12)`.
func Parse(name string, data []byte) (*Policy, error) {
	d := decoder{file: name}
	p, err := d.parse(data)
	if err != nil {
		return nil, err
	}
	base := filepath.Base(name)
	p.Name = strings.TrimSuffix(base, filepath.Ext(base))
	p.compile()
	return p, nil
}

type decoder struct {
	file string
}

func (d *decoder) errf(n *yaml.Node, path, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if path != "" {
		msg = path + ": " + msg
	}
	if n != nil && n.Line > 0 {
		msg += fmt.Sprintf(" (line %d)", n.Line)
	}
	return fmt.Errorf("%s: %s", d.file, msg)
}

func (d *decoder) parse(data []byte) (*Policy, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %s", d.file, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil, fmt.Errorf("%s: the policy is empty", d.file)
	}
	root := deref(doc.Content[0])
	if root.Kind != yaml.MappingNode {
		return nil, d.errf(root, "", "want a Policy object, got %s", kindName(root))
	}
	p := &Policy{}
	var apiVersion, kind string
	var rules *yaml.Node
	err := d.fields(root, "", func(key string, v *yaml.Node, path string) error {
		var err error
		switch key {
		case "apiVersion":
			apiVersion, err = d.str(v, path)
		case "kind":
			kind, err = d.str(v, path)
		case "metadata":
			if !isNull(v) && v.Kind != yaml.MappingNode {
				err = d.errf(v, path, "want an object, got %s", kindName(v))
			}
		case "rules":
			rules = v
		case "omitStages":
			p.OmitStages, err = d.stages(v, path)
		case "omitManagedFields":
			p.OmitManagedFields, err = d.boolean(v, path)
		default:
			return errUnknown
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if apiVersion != "audit.k8s.io/v1" {
		return nil, d.errf(root, "apiVersion", "%q is not supported (want audit.k8s.io/v1)", apiVersion)
	}
	if kind != "Policy" {
		return nil, d.errf(root, "kind", "%q is not supported (want Policy)", kind)
	}
	if rules != nil && !isNull(rules) {
		if rules.Kind != yaml.SequenceNode {
			return nil, d.errf(rules, "rules", "want a list, got %s", kindName(rules))
		}
		for i, rn := range rules.Content {
			r, err := d.rule(deref(rn), fmt.Sprintf("rules[%d]", i))
			if err != nil {
				return nil, err
			}
			p.Rules = append(p.Rules, r)
		}
	}
	if len(p.Rules) == 0 {
		return nil, d.errf(root, "rules", "a policy needs at least one rule")
	}
	return p, nil
}

var errUnknown = errors.New("unknown field")

// fields calls f for each key of mapping n; f returns errUnknown for a key
// it does not know.
func (d *decoder) fields(n *yaml.Node, path string, f func(key string, v *yaml.Node, path string) error) error {
	seen := make(map[string]bool, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, vn := deref(n.Content[i]), deref(n.Content[i+1])
		if kn.Kind != yaml.ScalarNode || kn.Tag != "!!str" {
			return d.errf(kn, path, "keys must be strings")
		}
		key := kn.Value
		sub := key
		if path != "" {
			sub = path + "." + key
		}
		if seen[key] {
			return d.errf(kn, sub, "duplicate key")
		}
		seen[key] = true
		if err := f(key, vn, sub); err != nil {
			if err == errUnknown {
				return d.errf(kn, sub, "unknown field")
			}
			return err
		}
	}
	return nil
}

func (d *decoder) rule(n *yaml.Node, path string) (Rule, error) {
	r := Rule{Level: levelUnset}
	if n.Kind != yaml.MappingNode {
		return r, d.errf(n, path, "want an object, got %s", kindName(n))
	}
	err := d.fields(n, path, func(key string, v *yaml.Node, path string) error {
		var err error
		switch key {
		case "level":
			var s string
			if s, err = d.str(v, path); err == nil {
				r.Level, err = d.level(v, path, s)
			}
		case "users":
			r.Users, err = d.strs(v, path)
		case "userGroups":
			r.UserGroups, err = d.strs(v, path)
		case "verbs":
			r.Verbs, err = d.strs(v, path)
		case "resources":
			r.Resources, err = d.groupResources(v, path)
		case "namespaces":
			r.Namespaces, err = d.strs(v, path)
		case "nonResourceURLs":
			if r.NonResourceURLs, err = d.strs(v, path); err == nil {
				err = d.urls(v, path, r.NonResourceURLs)
			}
		case "omitStages":
			r.OmitStages, err = d.stages(v, path)
		case "omitManagedFields":
			if !isNull(v) {
				var b bool
				b, err = d.boolean(v, path)
				r.OmitManagedFields = &b
			}
		default:
			return errUnknown
		}
		return err
	})
	if err != nil {
		return r, err
	}
	if r.Level == levelUnset {
		return r, d.errf(n, path+".level", "required")
	}
	if len(r.NonResourceURLs) > 0 && (len(r.Resources) > 0 || len(r.Namespaces) > 0) {
		return r, d.errf(n, path+".nonResourceURLs", "rules cannot apply to both regular resources and non-resource URLs")
	}
	return r, nil
}

func (d *decoder) level(n *yaml.Node, path, s string) (Level, error) {
	if s == "" {
		return levelUnset, nil
	}
	l, ok := ParseLevel(s)
	if !ok {
		return 0, d.errf(n, path, "unsupported level %q (want None, Metadata, Request or RequestResponse)", s)
	}
	return l, nil
}

func (d *decoder) groupResources(n *yaml.Node, path string) ([]GroupResources, error) {
	if isNull(n) {
		return nil, nil
	}
	if n.Kind != yaml.SequenceNode {
		return nil, d.errf(n, path, "want a list, got %s", kindName(n))
	}
	var out []GroupResources
	for i, en := range n.Content {
		en = deref(en)
		ep := fmt.Sprintf("%s[%d]", path, i)
		if en.Kind != yaml.MappingNode {
			return nil, d.errf(en, ep, "want an object, got %s", kindName(en))
		}
		var gr GroupResources
		err := d.fields(en, ep, func(key string, v *yaml.Node, path string) error {
			var err error
			switch key {
			case "group":
				if gr.Group, err = d.str(v, path); err == nil && gr.Group != "" && gr.Group != "*" {
					if msg := dnsSubdomain(gr.Group); msg != "" {
						err = d.errf(v, path, "invalid group %q: %s", gr.Group, msg)
					}
				}
			case "resources":
				gr.Resources, err = d.strs(v, path)
			case "resourceNames":
				gr.ResourceNames, err = d.strs(v, path)
			default:
				return errUnknown
			}
			return err
		})
		if err != nil {
			return nil, err
		}
		if len(gr.ResourceNames) > 0 && len(gr.Resources) == 0 {
			return nil, d.errf(en, ep+".resourceNames", "using resourceNames requires at least one resource")
		}
		out = append(out, gr)
	}
	return out, nil
}

func (d *decoder) urls(n *yaml.Node, path string, urls []string) error {
	for i, u := range urls {
		if u == "*" {
			continue
		}
		ep := fmt.Sprintf("%s[%d]", path, i)
		if !strings.HasPrefix(u, "/") {
			return d.errf(n.Content[i], ep, "%q: non-resource URL rules must begin with a '/' character", u)
		}
		if strings.Contains(u[:len(u)-1], "*") {
			return d.errf(n.Content[i], ep, "%q: non-resource URL wildcards '*' must be the final character of the rule", u)
		}
	}
	return nil
}

func (d *decoder) stages(n *yaml.Node, path string) ([]Stage, error) {
	ss, err := d.strs(n, path)
	if err != nil {
		return nil, err
	}
	var out []Stage
	for i, s := range ss {
		st, ok := ParseStage(s)
		if !ok {
			return nil, d.errf(deref(n.Content[i]), fmt.Sprintf("%s[%d]", path, i), "unsupported stage %q (want RequestReceived, ResponseStarted, ResponseComplete or Panic)", s)
		}
		out = append(out, st)
	}
	return out, nil
}

func (d *decoder) strs(n *yaml.Node, path string) ([]string, error) {
	if isNull(n) {
		return nil, nil
	}
	if n.Kind != yaml.SequenceNode {
		return nil, d.errf(n, path, "want a list of strings, got %s", kindName(n))
	}
	out := make([]string, 0, len(n.Content))
	for i, en := range n.Content {
		s, err := d.str(deref(en), fmt.Sprintf("%s[%d]", path, i))
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func (d *decoder) str(n *yaml.Node, path string) (string, error) {
	if isNull(n) {
		return "", nil
	}
	if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
		return "", d.errf(n, path, "want a string, got %s", kindName(n))
	}
	return n.Value, nil
}

func (d *decoder) boolean(n *yaml.Node, path string) (bool, error) {
	if isNull(n) {
		return false, nil
	}
	if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
		return false, d.errf(n, path, "want true or false, got %s", kindName(n))
	}
	switch n.Value {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, d.errf(n, path, "want true or false, got %q", n.Value)
}

func deref(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "an object"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!str":
			return fmt.Sprintf("the string %q", n.Value)
		case "!!null":
			return "null"
		default:
			return n.Value
		}
	}
	return "an unsupported value"
}

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// dnsSubdomain returns why s is not a lower case RFC 1123 subdomain, or "".
func dnsSubdomain(s string) string {
	if len(s) > 253 {
		return "must be no more than 253 characters"
	}
	for _, l := range strings.Split(s, ".") {
		if !dnsLabel.MatchString(l) {
			return "must be a lowercase RFC 1123 subdomain (for example apps or rbac.authorization.k8s.io)"
		}
	}
	return ""
}
