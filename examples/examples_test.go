// Package examples_test checks that the examples work together: the
// systemd unit passes `systemd-analyze verify` and a security review, every
// audittail config parses, the API server flags write the audit log where
// audittail and its manifests look for it, the audit policies say what
// their comments say, the receiver configs take messages of the size
// they advertise (rsyslog: with rsyslogd itself; Fluent Bit and Fluentd,
// which Debian 12 does not package: their limits, statically), and the
// webhook example's kubeconfig, config and certificates fit together
// (webhook_test.go).
//
// systemd-analyze and rsyslogd are required, not optional: `make deps`
// (scripts/install-test-deps.sh) installs Debian's systemd and rsyslog.
package examples_test

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/audittail/audittail/agent"
)

const (
	k3sAuditLog     = "/var/lib/rancher/k3s/server/logs/audit.log"
	kubeadmAuditLog = "/var/log/kubernetes/audit/audit.log"
	unitFile        = "systemd/audittail.service"
	// maxExposure is the highest `systemd-analyze security` score the unit
	// may have (0 best, 10 worst; up to 2.0 is rated "OK").
	maxExposure = 2.0
)

// configs lists every audittail config under config/, with the output type
// it demonstrates. TestConfigs fails when a file is missing here, so a new
// example gets the same checks; extend the checks (for example, build each
// output) in TestConfigs and every row gets them.
var configs = []struct {
	file       string
	outputType string
}{
	{"config/file.yaml", "file"},
	{"config/fluentd.yaml", "fluentd"},
	{"config/ibmcloudlogs.yaml", "ibmcloudlogs"},
	{"config/falco.yaml", "webhook"},
	{"config/elasticsearch.yaml", "elasticsearch"},
	{"config/kafka.yaml", "kafka"},
	{"config/logdna.yaml", "logdna"},
	{"config/syslog.yaml", "syslog"},
	{"config/otlp.yaml", "otlp"},
}

// unit is a parsed systemd unit file: section -> key -> values in order.
type unit map[string]map[string][]string

func parseUnit(t *testing.T, file string) unit {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	u := unit{}
	section := ""
	var pending string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if pending != "" {
			line = pending + " " + line
			pending = ""
		}
		if rest, ok := strings.CutSuffix(line, "\\"); ok {
			pending = strings.TrimSpace(rest)
			continue
		}
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[':
			section = strings.Trim(line, "[]")
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not key=value in a section: %q", file, n, line)
			}
			u[section][k] = append(u[section][k], strings.Join(strings.Fields(v), " "))
		}
	}
	return u
}

// get returns the last value of a key ("" when unset or reset).
func (u unit) get(section, key string) string {
	vs := u[section][key]
	if len(vs) == 0 {
		return ""
	}
	return vs[len(vs)-1]
}

// words returns every space-separated value of a key, over all its lines.
func (u unit) words(section, key string) []string {
	var w []string
	for _, v := range u[section][key] {
		w = append(w, strings.Fields(v)...)
	}
	return w
}

// systemdAnalyze returns the path of systemd-analyze or fails the test.
func systemdAnalyze(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatal("systemd-analyze not found: run `make deps` (installs Debian's systemd package)")
	}
	return p
}

// withExecutable copies a unit into a temporary directory (same file name)
// with its ExecStart binary replaced by an executable that exists here:
// `systemd-analyze verify` checks that the binary is executable, not what it
// does, so this test's own binary stands in for audittail or k3s.
func withExecutable(t *testing.T, file, binary string) string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte("ExecStart="+binary+" ")) {
		t.Fatalf("%s: ExecStart does not run %s", file, binary)
	}
	data = bytes.ReplaceAll(data, []byte("ExecStart="+binary+" "), []byte("ExecStart="+self+" "))
	out := filepath.Join(t.TempDir(), filepath.Base(file))
	if err := os.WriteFile(out, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestSystemdUnitsVerify(t *testing.T) {
	sa := systemdAnalyze(t)
	for _, c := range []struct{ file, binary string }{
		{unitFile, "/usr/local/bin/audittail"},
		{"k3s/k3s.service", "/usr/local/bin/k3s"},
	} {
		t.Run(c.file, func(t *testing.T) {
			// --man=no: do not look up man pages named in Documentation=.
			out, err := exec.Command(sa, "verify", "--man=no", withExecutable(t, c.file, c.binary)).CombinedOutput()
			if err != nil || len(bytes.TrimSpace(out)) > 0 {
				// A warning (unknown key, bad value) exits 0 but is printed.
				t.Errorf("systemd-analyze verify %s: %v\n%s", c.file, err, out)
			}
		})
	}
}

var exposureLine = regexp.MustCompile(`Overall exposure level for \S+: (\d+\.\d+) (\S+)`)

func TestSystemdUnitSecurityScore(t *testing.T) {
	sa := systemdAnalyze(t)
	out, err := exec.Command(sa, "security", "--offline=true", "--no-pager", withExecutable(t, unitFile, "/usr/local/bin/audittail")).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security --offline=true: %v\n%s", err, out)
	}
	m := exposureLine.FindSubmatch(out)
	if m == nil {
		t.Fatalf("no overall exposure level in:\n%s", out)
	}
	score, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("exposure %.1f %s", score, m[2])
	if score > maxExposure {
		t.Errorf("exposure level %.1f is above %.1f:\n%s", score, maxExposure, out)
	}
}

func TestSystemdUnit(t *testing.T) {
	u := parseUnit(t, unitFile)

	t.Run("starts the agent after k3s", func(t *testing.T) {
		if got, want := u.get("Service", "ExecStart"), "/usr/local/bin/audittail run --config /etc/audittail/config.yaml"; got != want {
			t.Errorf("ExecStart = %q, want %q", got, want)
		}
		for _, key := range []string{"After", "Wants"} {
			if !slices.Contains(u.words("Unit", key), "k3s.service") {
				t.Errorf("%s= does not name k3s.service", key)
			}
		}
		if u.get("Service", "Restart") != "on-failure" {
			t.Errorf("Restart = %q, want on-failure", u.get("Service", "Restart"))
		}
	})

	t.Run("gives the agent time to flush on stop", func(t *testing.T) {
		stop, err := time.ParseDuration(u.get("Service", "TimeoutStopSec"))
		if err != nil {
			t.Fatalf("TimeoutStopSec: %v", err)
		}
		for _, c := range configs {
			cfg := parseConfig(t, c.file)
			if stop <= cfg.ShutdownTimeout {
				t.Errorf("TimeoutStopSec %s is not longer than %s's shutdown_timeout %s", stop, c.file, cfg.ShutdownTimeout)
			}
		}
	})

	t.Run("runs as root without any capability", func(t *testing.T) {
		if user := u.get("Service", "User"); user != "" && user != "root" {
			t.Errorf("User = %s; the audit log is root's, mode 0600", user)
		}
		if u.get("Service", "DynamicUser") == "yes" {
			t.Errorf("DynamicUser=yes cannot read the root-owned audit log")
		}
		if vs, ok := u["Service"]["CapabilityBoundingSet"]; !ok || u.get("Service", "CapabilityBoundingSet") != "" || len(vs) != 1 {
			t.Errorf("CapabilityBoundingSet = %q, want empty", vs)
		}
		if u.get("Service", "AmbientCapabilities") != "" {
			t.Errorf("AmbientCapabilities = %q", u.get("Service", "AmbientCapabilities"))
		}
		if u.get("Service", "NoNewPrivileges") != "yes" {
			t.Errorf("NoNewPrivileges is not yes")
		}
	})

	t.Run("can write only its state directory", func(t *testing.T) {
		if u.get("Service", "ProtectSystem") != "strict" {
			t.Errorf("ProtectSystem = %q, want strict", u.get("Service", "ProtectSystem"))
		}
		if u.get("Service", "StateDirectory") != "audittail" {
			t.Errorf("StateDirectory = %q, want audittail", u.get("Service", "StateDirectory"))
		}
		if got := u.words("Service", "ReadWritePaths"); !slices.Equal(got, []string{"/var/lib/audittail"}) {
			t.Errorf("ReadWritePaths = %q, want only /var/lib/audittail", got)
		}
		for _, c := range configs {
			if cfg := parseConfig(t, c.file); cfg.StateDir != "/var/lib/audittail" {
				t.Errorf("%s: state_dir %s is not the unit's StateDirectory", c.file, cfg.StateDir)
			}
		}
	})

	t.Run("sees the k3s audit directory read-only", func(t *testing.T) {
		dir := path.Dir(k3sAuditLog)
		if !slices.Contains(u.words("Service", "BindReadOnlyPaths"), dir) {
			t.Errorf("BindReadOnlyPaths does not expose %s", dir)
		}
		if !slices.Contains(u.words("Service", "ReadOnlyPaths"), dir) {
			t.Errorf("ReadOnlyPaths does not name %s", dir)
		}
		if got := u.get("Service", "TemporaryFileSystem"); got != "/var/lib/rancher:ro" {
			t.Errorf("TemporaryFileSystem = %q: the rest of /var/lib/rancher (k3s keys, token, datastore) must stay hidden", got)
		}
		for _, c := range configs {
			cfg := parseConfig(t, c.file)
			if cfg.Inputs[0].Path != k3sAuditLog {
				t.Errorf("%s: inputs[0].path %s, want %s", c.file, cfg.Inputs[0].Path, k3sAuditLog)
			}
		}
	})

	t.Run("is sandboxed", func(t *testing.T) {
		for key, want := range map[string]string{
			"ProtectHome":             "yes",
			"PrivateTmp":              "yes",
			"PrivateDevices":          "yes",
			"ProtectKernelTunables":   "yes",
			"ProtectKernelModules":    "yes",
			"ProtectKernelLogs":       "yes",
			"ProtectControlGroups":    "yes",
			"ProtectClock":            "yes",
			"ProtectHostname":         "yes",
			"RestrictNamespaces":      "yes",
			"LockPersonality":         "yes",
			"MemoryDenyWriteExecute":  "yes",
			"RestrictRealtime":        "yes",
			"RestrictSUIDSGID":        "yes",
			"SystemCallArchitectures": "native",
			"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
		} {
			if got := u.get("Service", key); got != want {
				t.Errorf("%s = %q, want %q", key, got, want)
			}
		}
		if !slices.Contains(u["Service"]["SystemCallFilter"], "@system-service") {
			t.Errorf("SystemCallFilter does not allow only @system-service")
		}
	})
}

func parseConfig(t *testing.T, file string) *agent.Config {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := agent.ParseConfig(data)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return cfg
}

func TestConfigs(t *testing.T) {
	files, err := filepath.Glob("config/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if !slices.ContainsFunc(configs, func(c struct{ file, outputType string }) bool { return c.file == f }) {
			t.Errorf("%s is not in the configs table of examples_test.go", f)
		}
	}
	for _, c := range configs {
		t.Run(c.file, func(t *testing.T) {
			cfg := parseConfig(t, c.file)
			if len(cfg.Outputs) != 1 || cfg.Outputs[0].Type != c.outputType {
				t.Fatalf("want one %s output, got %+v", c.outputType, cfg.Outputs)
			}
			// Secrets come from files in /etc/audittail, which the unit
			// leaves readable (ProtectSystem=strict is read-only).
			var raw struct {
				Outputs []map[string]any `json:"outputs"`
			}
			data, _ := os.ReadFile(c.file)
			if err := yaml.Unmarshal(data, &raw); err != nil {
				t.Fatal(err)
			}
			for k, v := range raw.Outputs[0] {
				if s, ok := v.(string); ok && strings.HasSuffix(k, "_file") && !strings.HasPrefix(s, "/etc/audittail/") {
					t.Errorf("%s: %s is outside /etc/audittail", k, s)
				}
				if strings.HasSuffix(k, "_key") || k == "password" {
					t.Errorf("%s: a secret written in the config; use a *_file key", k)
				}
			}
		})
	}
}

// apiServerFlags are the audit flags every example gives kube-apiserver.
func wantFlags(logPath, policy string) map[string]string {
	return map[string]string{
		"audit-log-path":      logPath,
		"audit-policy-file":   policy,
		"audit-log-maxsize":   "100",
		"audit-log-maxbackup": "10",
	}
}

func checkFlags(t *testing.T, where string, got, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %s = %q, want %q", where, k, got[k], v)
		}
	}
	if _, ok := got["audit-log-maxage"]; ok {
		t.Errorf("%s: audit-log-maxage deletes backups audittail may not have read", where)
	}
}

func splitFlag(s string) (string, string) {
	k, v, _ := strings.Cut(strings.TrimLeft(s, "-"), "=")
	return k, v
}

func TestAPIServerFlags(t *testing.T) {
	const k3sPolicy = "/var/lib/rancher/k3s/server/audit.yaml"
	const kubeadmPolicy = "/etc/kubernetes/audit-policy.yaml"

	t.Run("k3s config.yaml writes the log audittail follows", func(t *testing.T) {
		var c struct {
			KubeAPIServerArg []string `json:"kube-apiserver-arg"`
		}
		data, err := os.ReadFile("k3s/config.yaml")
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.UnmarshalStrict(data, &c); err != nil {
			t.Fatalf("k3s/config.yaml: %v", err)
		}
		got := map[string]string{}
		for _, a := range c.KubeAPIServerArg {
			k, v := splitFlag(a)
			got[k] = v
		}
		checkFlags(t, "k3s/config.yaml", got, wantFlags(k3sAuditLog, k3sPolicy))
	})

	t.Run("k3s.service passes the same flags", func(t *testing.T) {
		u := parseUnit(t, "k3s/k3s.service")
		got := map[string]string{}
		for _, w := range strings.Fields(u.get("Service", "ExecStart")) {
			if rest, ok := strings.CutPrefix(strings.Trim(w, `'"`), "--kube-apiserver-arg="); ok {
				k, v := splitFlag(rest)
				got[k] = v
			}
		}
		checkFlags(t, "k3s/k3s.service", got, wantFlags(k3sAuditLog, k3sPolicy))
	})

	t.Run("kubeadm ClusterConfiguration writes the log audittail follows", func(t *testing.T) {
		type volume struct {
			Name      string `json:"name"`
			HostPath  string `json:"hostPath"`
			MountPath string `json:"mountPath"`
			ReadOnly  bool   `json:"readOnly"`
			PathType  string `json:"pathType"`
		}
		var c struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			APIServer  struct {
				ExtraArgs []struct {
					Name  string `json:"name"`
					Value string `json:"value"`
				} `json:"extraArgs"`
				ExtraVolumes []volume `json:"extraVolumes"`
			} `json:"apiServer"`
		}
		data, err := os.ReadFile("kubeadm/kubeadm-config.yaml")
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.UnmarshalStrict(data, &c); err != nil {
			t.Fatalf("kubeadm/kubeadm-config.yaml: %v", err)
		}
		if c.APIVersion != "kubeadm.k8s.io/v1beta4" || c.Kind != "ClusterConfiguration" {
			t.Errorf("apiVersion %q kind %q", c.APIVersion, c.Kind)
		}
		got := map[string]string{}
		for _, a := range c.APIServer.ExtraArgs {
			got[a.Name] = a.Value
		}
		checkFlags(t, "kubeadm-config.yaml", got, wantFlags(kubeadmAuditLog, kubeadmPolicy))
		vols := map[string]volume{}
		for _, v := range c.APIServer.ExtraVolumes {
			vols[v.MountPath] = v
		}
		if v := vols[path.Dir(kubeadmAuditLog)]; v.HostPath != path.Dir(kubeadmAuditLog) || v.ReadOnly || v.PathType != "DirectoryOrCreate" {
			t.Errorf("the audit directory is not mounted read-write from the host: %+v", v)
		}
		if v := vols[kubeadmPolicy]; v.HostPath != kubeadmPolicy || !v.ReadOnly || v.PathType != "File" {
			t.Errorf("the policy is not mounted read-only from the host: %+v", v)
		}
	})

	t.Run("kubeadm static pod writes the log audittail follows", func(t *testing.T) {
		data, err := os.ReadFile("kubeadm/kube-apiserver.yaml")
		if err != nil {
			t.Fatal(err)
		}
		var pod corev1.Pod
		if err := yaml.UnmarshalStrict(data, &pod); err != nil {
			t.Fatalf("kubeadm/kube-apiserver.yaml: %v", err)
		}
		c := pod.Spec.Containers[0]
		got := map[string]string{}
		for _, a := range c.Command[1:] {
			k, v := splitFlag(a)
			got[k] = v
		}
		checkFlags(t, "kube-apiserver.yaml", got, wantFlags(kubeadmAuditLog, kubeadmPolicy))
		hostDirs := map[string]string{}
		for _, v := range pod.Spec.Volumes {
			if v.HostPath != nil {
				hostDirs[v.Name] = v.HostPath.Path
			}
		}
		for _, m := range c.VolumeMounts {
			switch m.MountPath {
			case path.Dir(kubeadmAuditLog):
				if m.ReadOnly || hostDirs[m.Name] != m.MountPath {
					t.Errorf("audit directory mount %+v: want read-write, host path %s", m, m.MountPath)
				}
			case kubeadmPolicy:
				if !m.ReadOnly || hostDirs[m.Name] != m.MountPath {
					t.Errorf("policy mount %+v: want read-only, host path %s", m, m.MountPath)
				}
			}
		}
	})
}

// policy mirrors audit.k8s.io/v1 Policy (k8s.io/apiserver/pkg/apis/audit),
// so that a misspelt field fails the strict decode.
type policy struct {
	APIVersion        string       `json:"apiVersion"`
	Kind              string       `json:"kind"`
	OmitStages        []string     `json:"omitStages"`
	OmitManagedFields bool         `json:"omitManagedFields"`
	Rules             []policyRule `json:"rules"`
}

type policyRule struct {
	Level             string          `json:"level"`
	Users             []string        `json:"users"`
	UserGroups        []string        `json:"userGroups"`
	Verbs             []string        `json:"verbs"`
	Resources         []groupResource `json:"resources"`
	Namespaces        []string        `json:"namespaces"`
	NonResourceURLs   []string        `json:"nonResourceURLs"`
	OmitStages        []string        `json:"omitStages"`
	OmitManagedFields *bool           `json:"omitManagedFields"`
}

type groupResource struct {
	Group         string   `json:"group"`
	Resources     []string `json:"resources"`
	ResourceNames []string `json:"resourceNames"`
}

// request is what the policy is evaluated against.
type request struct {
	user     string
	groups   []string
	verb     string
	group    string
	resource string // "pods" or "pods/exec"
	ns       string
	url      string // non-resource requests only
}

// level returns the level of the first matching rule, as the API server's
// policy checker does ("None" when no rule matches).
func (p *policy) level(r request) string {
	for _, rule := range p.Rules {
		if rule.matches(r) {
			return rule.Level
		}
	}
	return "None"
}

func (rule policyRule) matches(r request) bool {
	if len(rule.Users) > 0 && !slices.Contains(rule.Users, r.user) {
		return false
	}
	if len(rule.UserGroups) > 0 && !slices.ContainsFunc(r.groups, func(g string) bool { return slices.Contains(rule.UserGroups, g) }) {
		return false
	}
	if len(rule.Verbs) > 0 && !slices.Contains(rule.Verbs, r.verb) {
		return false
	}
	if r.url != "" {
		if len(rule.Resources) > 0 || len(rule.Namespaces) > 0 {
			return false
		}
		if len(rule.NonResourceURLs) == 0 {
			return true
		}
		return slices.ContainsFunc(rule.NonResourceURLs, func(u string) bool {
			if prefix, ok := strings.CutSuffix(u, "*"); ok {
				return strings.HasPrefix(r.url, prefix)
			}
			return u == r.url
		})
	}
	if len(rule.NonResourceURLs) > 0 {
		return false
	}
	if len(rule.Namespaces) > 0 && !slices.Contains(rule.Namespaces, r.ns) {
		return false
	}
	if len(rule.Resources) == 0 {
		return true
	}
	res, sub, _ := strings.Cut(r.resource, "/")
	return slices.ContainsFunc(rule.Resources, func(gr groupResource) bool {
		if gr.Group != r.group {
			return false
		}
		if len(gr.Resources) == 0 {
			return true
		}
		return slices.ContainsFunc(gr.Resources, func(pat string) bool {
			switch {
			case pat == "*" || pat == r.resource:
				return true
			case pat == "*/"+sub && sub != "":
				return true
			case pat == res+"/*" && sub != "":
				return true
			}
			return false
		})
	})
}

func loadPolicy(t *testing.T, file string) *policy {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var p policy
	if err := yaml.UnmarshalStrict(data, &p); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if p.APIVersion != "audit.k8s.io/v1" || p.Kind != "Policy" {
		t.Fatalf("%s: apiVersion %q kind %q", file, p.APIVersion, p.Kind)
	}
	levels := []string{"None", "Metadata", "Request", "RequestResponse"}
	stages := []string{"RequestReceived", "ResponseStarted", "ResponseComplete", "Panic"}
	for i, r := range p.Rules {
		if !slices.Contains(levels, r.Level) {
			t.Errorf("%s: rules[%d]: invalid level %q", file, i, r.Level)
		}
		for _, s := range r.OmitStages {
			if !slices.Contains(stages, s) {
				t.Errorf("%s: rules[%d]: invalid stage %q", file, i, s)
			}
		}
		if len(r.NonResourceURLs) > 0 && (len(r.Resources) > 0 || len(r.Namespaces) > 0) {
			t.Errorf("%s: rules[%d]: nonResourceURLs cannot be mixed with resources or namespaces", file, i)
		}
	}
	for _, s := range p.OmitStages {
		if !slices.Contains(stages, s) {
			t.Errorf("%s: invalid stage %q", file, s)
		}
	}
	return &p
}

var (
	admin      = request{user: "kubernetes-admin", groups: []string{"system:masters", "system:authenticated"}}
	kubelet    = request{user: "system:node:cp-1", groups: []string{"system:nodes", "system:authenticated"}}
	controller = request{user: "system:kube-controller-manager", groups: []string{"system:authenticated"}}
)

func (r request) do(verb, group, resource, ns string) request {
	r.verb, r.group, r.resource, r.ns = verb, group, resource, ns
	return r
}

func (r request) get(url string) request {
	r.verb, r.url = "get", url
	return r
}

func TestAuditPolicies(t *testing.T) {
	for _, c := range []struct {
		name  string
		file  string
		req   request
		level string
	}{
		{"logs deployment creations with bodies", "log-deployment-creations.yaml", admin.do("create", "apps", "deployments", "default"), "RequestResponse"},
		{"logs nothing else", "log-deployment-creations.yaml", admin.do("create", "", "pods", "default"), "None"},
		{"does not log deployment updates", "log-deployment-creations.yaml", admin.do("update", "apps", "deployments", "default"), "None"},

		{"never logs a secret's body", "production.yaml", admin.do("create", "", "secrets", "default"), "Metadata"},
		{"never logs a secret read's body", "production.yaml", admin.do("get", "", "secrets", "kube-system"), "Metadata"},
		{"never logs a configmap's body", "production.yaml", admin.do("update", "", "configmaps", "default"), "Metadata"},
		{"never logs an issued token", "production.yaml", kubelet.do("create", "", "serviceaccounts/token", "default"), "Metadata"},
		{"never logs a token review's token", "production.yaml", controller.do("create", "authentication.k8s.io", "tokenreviews", ""), "Metadata"},
		{"logs RBAC changes with bodies", "production.yaml", admin.do("create", "rbac.authorization.k8s.io", "clusterrolebindings", ""), "RequestResponse"},
		{"logs deployment changes with bodies", "production.yaml", admin.do("patch", "apps", "deployments", "default"), "RequestResponse"},
		{"logs pod creations with bodies", "production.yaml", admin.do("create", "", "pods", "default"), "RequestResponse"},
		{"logs webhook changes with bodies", "production.yaml", admin.do("create", "admissionregistration.k8s.io", "validatingwebhookconfigurations", ""), "RequestResponse"},
		{"logs exec into a pod", "production.yaml", admin.do("create", "", "pods/exec", "default"), "Metadata"},
		{"logs who read what", "production.yaml", admin.do("list", "", "pods", ""), "Metadata"},
		{"logs other writes", "production.yaml", admin.do("create", "example.com", "widgets", "default"), "Metadata"},
		{"skips health checks", "production.yaml", admin.get("/readyz"), "None"},
		{"logs other non-resource requests", "production.yaml", admin.get("/logs/syslog"), "Metadata"},
		{"skips node heartbeats", "production.yaml", kubelet.do("update", "coordination.k8s.io", "leases", "kube-node-lease"), "None"},
		{"skips leader election", "production.yaml", controller.do("update", "coordination.k8s.io", "leases", "kube-system"), "None"},
		{"logs a person's lease change", "production.yaml", admin.do("update", "coordination.k8s.io", "leases", "kube-system"), "Metadata"},
		{"skips events", "production.yaml", kubelet.do("create", "", "events", "default"), "None"},
	} {
		t.Run(c.file+"/"+c.name, func(t *testing.T) {
			p := loadPolicy(t, filepath.Join("audit-policy", c.file))
			if got := p.level(c.req); got != c.level {
				t.Errorf("%s %s/%s by %s: level %s, want %s", c.req.verb, c.req.group, c.req.resource, c.req.user, got, c.level)
			}
		})
	}
	for _, f := range []string{"log-deployment-creations.yaml", "production.yaml"} {
		t.Run(f+"/omits the RequestReceived stage", func(t *testing.T) {
			if p := loadPolicy(t, filepath.Join("audit-policy", f)); !slices.Contains(p.OmitStages, "RequestReceived") {
				t.Errorf("omitStages = %q", p.OmitStages)
			}
		})
	}
}

// TestRsyslogReceiver checks the receiver config with `rsyslogd -N1`, its
// TLS files replaced by a throwaway certificate.
func TestRsyslogReceiver(t *testing.T) {
	rsyslogd, err := exec.LookPath("rsyslogd")
	if err != nil {
		t.Fatal("rsyslogd not found: run `make deps` (installs Debian's rsyslog and rsyslog-gnutls)")
	}
	dir := t.TempDir()
	writeCert(t, dir)
	data, err := os.ReadFile("receivers/rsyslog.conf")
	if err != nil {
		t.Fatal(err)
	}
	data = bytes.ReplaceAll(data, []byte("/etc/rsyslog.d/tls/"), []byte(dir+"/"))
	conf := filepath.Join(dir, "rsyslog.conf")
	if err := os.WriteFile(conf, data, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(rsyslogd, "-N1", "-f", conf).CombinedOutput()
	if err != nil || bytes.Contains(out, []byte("error")) {
		t.Errorf("rsyslogd -N1: %v\n%s", err, out)
	}
}

// writeCert writes a throwaway CA (ca.pem) and a server certificate for
// siem.example.com signed by it, under the names the receiver examples use:
// server.crt and server.key, server.pem and server-key.pem.
func writeCert(t *testing.T, dir string) {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return key
	}
	caKey, serverKey := newKey(), newKey()
	ca := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "audittail test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	server := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "siem.example.com"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		DNSNames:     []string{"siem.example.com"},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	serverDER, err := x509.CreateCertificate(rand.Reader, server, ca, &serverKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(serverKey)
	if err != nil {
		t.Fatal(err)
	}
	cert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: serverDER})
	key := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	for name, content := range map[string][]byte{
		"ca.pem":         pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		"server.crt":     cert,
		"server.pem":     cert,
		"server.key":     key,
		"server-key.pem": key,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), content, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRELPReceiver checks the RELP receiver config with `rsyslogd -N1`
// (rsyslog-relp installed by make deps), its TLS files replaced by a
// throwaway certificate. outputs/syslog's RELP tests run rsyslogd with the
// same queue and TLS settings.
func TestRELPReceiver(t *testing.T) {
	rsyslogd, err := exec.LookPath("rsyslogd")
	if err != nil {
		t.Fatal("rsyslogd not found: run `make deps` (installs Debian's rsyslog and rsyslog-relp)")
	}
	dir := t.TempDir()
	writeCert(t, dir)
	data, err := os.ReadFile("rsyslog/relp.conf")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`queue.type="Direct"`, `load="imrelp"`, `tls.authMode="certvalid"`, "address: relp+tls://"} {
		if !bytes.Contains(data, []byte(want)) {
			t.Errorf("relp.conf does not say %s", want)
		}
	}
	data = bytes.ReplaceAll(data, []byte("/etc/rsyslog-tls/"), []byte(dir+"/"))
	data = bytes.ReplaceAll(data, []byte("/var/log/kube-audit/"), []byte(dir+"/"))
	data = bytes.ReplaceAll(data, []byte("/var/spool/rsyslog"), []byte(dir))
	conf := filepath.Join(dir, "relp.conf")
	if err := os.WriteFile(conf, data, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(rsyslogd, "-N1", "-f", conf).CombinedOutput()
	if err != nil || bytes.Contains(out, []byte("error")) {
		t.Errorf("rsyslogd -N1: %v\n%s", err, out)
	}
}
