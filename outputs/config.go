package outputs

import (
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Config is one entry of the `outputs:` list. The keys every output has are
// fields here; the keys of a type (address, url, path, ...) stay in the YAML
// node until the sink decodes them with DecodeOptions into its own Options
// struct, so that each sink owns its keys and an unknown key is still an
// error that names the key and its line.
type Config struct {
	// Name identifies the output in logs, metrics and the checkpoint; it
	// must be unique. Renaming an output starts it afresh. Default: the type.
	Name string `yaml:"name"`
	// Type selects the sink: file, stdout, null, fluentd, logdna or syslog.
	Type string `yaml:"type"`
	// OnParseError says what happens to a line that is not a valid audit
	// event: forward (default: send it as it is, so nothing is lost) or drop
	// (count and log it, do not send it).
	OnParseError string `yaml:"on_parse_error"`
	// DeadLetter is the JSON-lines file that receives events the sink
	// rejected permanently. Default: <state_dir>/deadletter/<name>.jsonl.
	DeadLetter string `yaml:"dead_letter"`
	// PolicyFile is an audit.k8s.io/v1 Policy applied to this output's
	// events with kube-apiserver's semantics (package policy): level None
	// or an omitted stage drops an event, a lower level cuts it.
	PolicyFile string `yaml:"policy_file"`
	// Redact lists field paths to mask, or the presets secrets and tokens.
	Redact []string `yaml:"redact"`

	options *yaml.Node // the type's own keys
	line    int
}

// commonKeys are decoded into Config itself.
var commonKeys = map[string]bool{"name": true, "type": true, "on_parse_error": true, "dead_letter": true, "policy_file": true, "redact": true}

// UnmarshalYAML decodes the common keys and keeps the rest for the sink.
func (c *Config) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: an output must be a mapping of keys", n.Line)
	}
	common := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	opts := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: n.Line}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if commonKeys[k.Value] {
			if k.Value == "type" && v.Kind == yaml.ScalarNode && v.Tag == "!!null" && v.Value == "null" {
				// `type: null` is YAML's null; the operator means the null output.
				v = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: "null", Line: v.Line, Column: v.Column}
			}
			common.Content = append(common.Content, k, v)
		} else {
			opts.Content = append(opts.Content, k, v)
		}
	}
	type plain Config
	var p plain
	if err := common.Decode(&p); err != nil {
		return err
	}
	*c = Config(p)
	c.options, c.line = opts, n.Line
	return nil
}

// Line returns the line of the output's entry in the config file (0 when
// the Config was not decoded from YAML).
func (c Config) Line() int { return c.line }

// DecodeOptions decodes the type's own keys into v, a pointer to a struct
// with yaml tags. A key v does not have, at any depth (tls.ca_fle), is an
// error naming the key, its line and the keys accepted there.
func (c Config) DecodeOptions(v any) error {
	if c.options == nil || len(c.options.Content) == 0 {
		return nil
	}
	if err := checkKeys(c.options, reflect.TypeOf(v), ""); err != nil {
		return err
	}
	if err := c.options.Decode(v); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			return errors.New(strings.Join(te.Errors, "; "))
		}
		return err
	}
	return nil
}

// checkKeys reports the first key of the mapping n that the struct type t
// has no field for, descending into nested structs.
func checkKeys(n *yaml.Node, t reflect.Type, prefix string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || n.Kind != yaml.MappingNode {
		return nil
	}
	if reflect.PointerTo(t).Implements(reflect.TypeFor[yaml.Unmarshaler]()) {
		return nil // the type checks its own keys
	}
	fields := yamlFields(t)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		ft, ok := fields[k.Value]
		if !ok {
			keys := make([]string, 0, len(fields))
			for key := range fields {
				keys = append(keys, key)
			}
			slices.Sort(keys)
			return fmt.Errorf("line %d: unknown key %q (known keys%s: %s)", k.Line, prefix+k.Value, under(prefix), strings.Join(keys, ", "))
		}
		if err := checkKeys(v, ft, prefix+k.Value+"."); err != nil {
			return err
		}
	}
	return nil
}

func under(prefix string) string {
	if prefix == "" {
		return ""
	}
	return " under " + strings.TrimSuffix(prefix, ".")
}

// yamlFields maps the yaml keys of struct type t to their field types.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	keys := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if strings.Contains(opts, "inline") {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			maps.Copy(keys, yamlFields(ft))
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		keys[name] = f.Type
	}
	return keys
}

// Keys lists the yaml keys of an options struct, nested ones dotted
// (tls.ca_file), for documentation checks.
func Keys(v any) []string {
	var out []string
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		for name, ft := range yamlFields(t) {
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct && ft.NumField() > 0 && ft.PkgPath() != "time" {
				walk(ft, prefix+name+".")
				continue
			}
			out = append(out, prefix+name)
		}
	}
	walk(reflect.TypeOf(v), "")
	slices.Sort(out)
	return out
}

// SetOptions replaces the type's keys; tests and programs that build a
// Config without YAML use it. opts is encoded to YAML first.
func (c *Config) SetOptions(opts any) error {
	var n yaml.Node
	if err := n.Encode(opts); err != nil {
		return err
	}
	c.options = &n
	return nil
}

// ByteSize is a size in bytes; YAML accepts a number or a string with a
// unit: 512KiB, 4MiB, 1GiB (also KB, MB, GB as powers of 1000).
type ByteSize int64

// UnmarshalText parses a size.
func (b *ByteSize) UnmarshalText(text []byte) error {
	v, err := ParseByteSize(string(text))
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// ParseByteSize parses 123, 4MiB, 10MB and the like.
func ParseByteSize(s string) (ByteSize, error) {
	s = strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if rest, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = strings.TrimSpace(rest), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("invalid size %q (want a number of bytes, or one with KiB, MiB, GiB)", s)
	}
	return ByteSize(n * mult), nil
}
