// Package manifests_test checks the Kubernetes manifests as a specification:
// every document decodes strictly into its k8s.io/api type, the DaemonSet
// that each node overlay renders schedules, mounts and confines audittail as
// docs/deployment.md says, and the webhook overlay's StatefulSet keeps its
// spool on a claim per replica, runs non-root and is reachable only by
// kube-apiserver's tunnel and by monitoring.
//
// The overlays are rendered here without kustomize: resources are read as
// listed and each patch is applied with a small strategic merge (maps merge,
// volumes and containers merge by name, tolerations are replaced), the
// semantics kustomize uses for patch files. When kubectl is on PATH,
// TestKustomizeAgrees also compares the result with `kubectl kustomize`.
package manifests_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/audittail/audittail/agent"
)

const (
	controlPlaneLabel = "node-role.kubernetes.io/control-plane"
	auditMountPath    = "/var/log/kubernetes/audit"
	metricsPort       = 9880
	configPath        = "/etc/audittail/config.yaml"
)

// overlay is what each kustomize overlay must produce.
type overlay struct {
	dir string
	// auditHostDir is the node directory kube-apiserver writes audit.log to.
	auditHostDir string
	// controlPlaneValue is the value of the control-plane node label.
	controlPlaneValue string
	// extraTaints must be tolerated besides the control-plane ones.
	extraTaints []corev1.Taint
}

var overlays = []overlay{
	{
		dir:               "overlays/kubeadm",
		auditHostDir:      "/var/log/kubernetes/audit",
		controlPlaneValue: "",
	},
	{
		dir:               "overlays/k3s",
		auditHostDir:      "/var/lib/rancher/k3s/server/logs",
		controlPlaneValue: "true",
		extraTaints: []corev1.Taint{
			{Key: "CriticalAddonsOnly", Value: "true", Effect: corev1.TaintEffectNoExecute},
		},
	},
}

// controlPlaneTaints are the taints kubeadm puts on control-plane nodes
// (master before v1.25).
var controlPlaneTaints = []corev1.Taint{
	{Key: "node-role.kubernetes.io/control-plane", Effect: corev1.TaintEffectNoSchedule},
	{Key: "node-role.kubernetes.io/master", Effect: corev1.TaintEffectNoSchedule},
}

// kustomization is the subset of kustomize's Kustomization we use; decoding
// strictly into it catches a misspelt key.
type kustomization struct {
	APIVersion string               `json:"apiVersion"`
	Kind       string               `json:"kind"`
	Namespace  string               `json:"namespace,omitempty"`
	Labels     []kustomizeLabel     `json:"labels,omitempty"`
	Resources  []string             `json:"resources"`
	Patches    []kustomizationPatch `json:"patches,omitempty"`
}

type kustomizeLabel struct {
	Pairs            map[string]string `json:"pairs"`
	IncludeSelectors bool              `json:"includeSelectors"`
}

type kustomizationPatch struct {
	Path   string `json:"path"`
	Target struct {
		Kind string `json:"kind"`
		Name string `json:"name"`
	} `json:"target"`
}

// object is one decoded manifest document.
type object struct {
	file string
	obj  any // *appsv1.DaemonSet, *corev1.ConfigMap, ...
}

// newObject returns a pointer to the Go type of a kind; only the kinds
// audittail ships are accepted.
func newObject(apiVersion, kind string) (any, error) {
	switch apiVersion + " " + kind {
	case "v1 Namespace":
		return &corev1.Namespace{}, nil
	case "v1 ServiceAccount":
		return &corev1.ServiceAccount{}, nil
	case "v1 ConfigMap":
		return &corev1.ConfigMap{}, nil
	case "v1 Secret":
		return &corev1.Secret{}, nil
	case "apps/v1 DaemonSet":
		return &appsv1.DaemonSet{}, nil
	case "apps/v1 StatefulSet":
		return &appsv1.StatefulSet{}, nil
	case "v1 Service":
		return &corev1.Service{}, nil
	case "networking.k8s.io/v1 NetworkPolicy":
		return &networkingv1.NetworkPolicy{}, nil
	case "policy/v1 PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, nil
	case "kustomize.config.k8s.io/v1beta1 Kustomization":
		return &kustomization{}, nil
	}
	return nil, fmt.Errorf("unexpected kind %q (apiVersion %q)", kind, apiVersion)
}

// decodeFile decodes every YAML document of a file strictly: an unknown or
// misspelt field is an error.
func decodeFile(t *testing.T, file string) []object {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var objs []object
	for i, doc := range splitDocuments(data) {
		var meta struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			t.Fatalf("%s: document %d: %v", file, i, err)
		}
		obj, err := newObject(meta.APIVersion, meta.Kind)
		if err != nil {
			t.Fatalf("%s: document %d: %v", file, i, err)
		}
		if err := yaml.UnmarshalStrict(doc, obj); err != nil {
			t.Fatalf("%s: document %d (%s): %v", file, i, meta.Kind, err)
		}
		objs = append(objs, object{file: file, obj: obj})
	}
	if len(objs) == 0 {
		t.Fatalf("%s: no YAML document", file)
	}
	return objs
}

var separator = regexp.MustCompile(`(?m)^---\s*$`)

func splitDocuments(data []byte) [][]byte {
	var docs [][]byte
	for _, d := range separator.Split(string(data), -1) {
		if strings.TrimSpace(stripComments(d)) != "" {
			docs = append(docs, []byte(d))
		}
	}
	return docs
}

func stripComments(s string) string {
	var b strings.Builder
	for _, line := range strings.Split(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

// rendered is the result of building a kustomization.
type rendered struct {
	daemonSet   *appsv1.DaemonSet
	configMap   *corev1.ConfigMap
	namespace   *corev1.Namespace
	serviceAcct *corev1.ServiceAccount
	config      *agent.Config
}

// build renders a kustomization directory: resources (files or other
// kustomizations) in order, then its patches, strategic-merged.
func build(t *testing.T, dir string) []object {
	t.Helper()
	k := decodeFile(t, filepath.Join(dir, "kustomization.yaml"))[0].obj.(*kustomization)
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		t.Fatalf("%s/kustomization.yaml: apiVersion %q kind %q", dir, k.APIVersion, k.Kind)
	}
	var objs []object
	for _, r := range k.Resources {
		p := filepath.Join(dir, r)
		st, err := os.Stat(p)
		if err != nil {
			t.Fatalf("%s/kustomization.yaml: resource %s: %v", dir, r, err)
		}
		if st.IsDir() {
			objs = append(objs, build(t, p)...)
		} else {
			objs = append(objs, decodeFile(t, p)...)
		}
	}
	for _, p := range k.Patches {
		patch := decodeFile(t, filepath.Join(dir, p.Path))
		if len(patch) != 1 {
			t.Fatalf("%s: want one document, got %d", p.Path, len(patch))
		}
		applied := false
		for i, o := range objs {
			ds, ok := o.obj.(*appsv1.DaemonSet)
			if !ok || p.Target.Kind != "DaemonSet" || ds.Name != p.Target.Name {
				continue
			}
			objs[i].obj = strategicMerge(t, ds, filepath.Join(dir, p.Path))
			applied = true
		}
		if !applied {
			t.Fatalf("%s/kustomization.yaml: patch %s targets %s %q, which is not among the resources", dir, p.Path, p.Target.Kind, p.Target.Name)
		}
	}
	if k.Namespace != "" {
		for _, o := range objs {
			if m, ok := o.obj.(interface{ SetNamespace(string) }); ok {
				if _, isNS := o.obj.(*corev1.Namespace); !isNS {
					m.SetNamespace(k.Namespace)
				}
			}
		}
	}
	return objs
}

func strategicMerge(t *testing.T, ds *appsv1.DaemonSet, patchFile string) *appsv1.DaemonSet {
	t.Helper()
	orig, err := json.Marshal(ds)
	if err != nil {
		t.Fatal(err)
	}
	patchYAML, err := os.ReadFile(patchFile)
	if err != nil {
		t.Fatal(err)
	}
	patchJSON, err := yaml.YAMLToJSON(patchYAML)
	if err != nil {
		t.Fatalf("%s: %v", patchFile, err)
	}
	var doc, patch map[string]any
	if err := json.Unmarshal(orig, &doc); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(patchJSON, &patch); err != nil {
		t.Fatal(err)
	}
	merged, err := json.Marshal(mergeMaps(doc, patch))
	if err != nil {
		t.Fatalf("%s: %v", patchFile, err)
	}
	if bytes.Contains(patchJSON, []byte(`"$patch"`)) || bytes.Contains(patchJSON, []byte(`"$setElementOrder`)) {
		t.Fatalf("%s: patch directives are not supported by this test's merge", patchFile)
	}
	var out appsv1.DaemonSet
	dec := json.NewDecoder(bytes.NewReader(merged))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&out); err != nil {
		t.Fatalf("%s: patched DaemonSet: %v", patchFile, err)
	}
	return &out
}

// mergeKeys are the patchMergeKey tags of the pod spec's lists; a list
// without one (tolerations, args) is replaced by the patch's list, as the
// Kubernetes strategic merge patch does.
var mergeKeys = map[string]string{
	"containers":     "name",
	"initContainers": "name",
	"volumes":        "name",
	"env":            "name",
	"volumeMounts":   "mountPath",
	"ports":          "containerPort",
}

// mergeMaps applies a strategic merge patch (without $patch directives):
// maps merge key by key, lists with a merge key merge element by element,
// other values are replaced, and null deletes.
func mergeMaps(doc, patch map[string]any) map[string]any {
	for k, pv := range patch {
		if pv == nil {
			delete(doc, k)
			continue
		}
		switch pv := pv.(type) {
		case map[string]any:
			if dv, ok := doc[k].(map[string]any); ok {
				doc[k] = mergeMaps(dv, pv)
				continue
			}
		case []any:
			if key, ok := mergeKeys[k]; ok {
				if dv, ok := doc[k].([]any); ok {
					doc[k] = mergeLists(dv, pv, key)
					continue
				}
			}
		}
		doc[k] = patch[k]
	}
	return doc
}

func mergeLists(doc, patch []any, key string) []any {
	for _, pe := range patch {
		pm, ok := pe.(map[string]any)
		if !ok {
			doc = append(doc, pe)
			continue
		}
		i := slices.IndexFunc(doc, func(de any) bool {
			dm, ok := de.(map[string]any)
			return ok && reflect.DeepEqual(dm[key], pm[key])
		})
		if i < 0 {
			doc = append(doc, pm)
			continue
		}
		doc[i] = mergeMaps(doc[i].(map[string]any), pm)
	}
	return doc
}

// render builds dir and picks out the objects the specs look at.
func render(t *testing.T, dir string) rendered {
	t.Helper()
	var r rendered
	for _, o := range build(t, dir) {
		switch v := o.obj.(type) {
		case *appsv1.DaemonSet:
			if r.daemonSet != nil {
				t.Fatalf("%s: two DaemonSets", dir)
			}
			r.daemonSet = v
		case *corev1.ConfigMap:
			r.configMap = v
		case *corev1.Namespace:
			r.namespace = v
		case *corev1.ServiceAccount:
			r.serviceAcct = v
		case *corev1.Secret:
			t.Errorf("%s: renders a Secret from %s; the example Secret must not be applied over the real one", dir, o.file)
		}
	}
	if r.daemonSet == nil || r.configMap == nil || r.namespace == nil || r.serviceAcct == nil {
		t.Fatalf("%s: want a DaemonSet, ConfigMap, Namespace and ServiceAccount", dir)
	}
	data, ok := r.configMap.Data["config.yaml"]
	if !ok {
		t.Fatalf("%s: ConfigMap %s has no config.yaml", dir, r.configMap.Name)
	}
	// The DaemonSet sets NODE_NAME; the config may refer to it.
	t.Setenv("NODE_NAME", "cp-1")
	cfg, err := agent.ParseConfig([]byte(data))
	if err != nil {
		t.Fatalf("%s: ConfigMap config.yaml: %v", dir, err)
	}
	r.config = cfg
	return r
}

func container(t *testing.T, ds *appsv1.DaemonSet) *corev1.Container {
	t.Helper()
	return podContainer(t, &ds.Spec.Template.Spec)
}

func podContainer(t *testing.T, pod *corev1.PodSpec) *corev1.Container {
	t.Helper()
	cs := pod.Containers
	if len(cs) != 1 || cs[0].Name != "audittail" {
		t.Fatalf("want one container named audittail, got %d", len(cs))
	}
	return &cs[0]
}

func volume(t *testing.T, ds *appsv1.DaemonSet, name string) *corev1.Volume {
	t.Helper()
	return podVolume(t, &ds.Spec.Template.Spec, name)
}

func podVolume(t *testing.T, pod *corev1.PodSpec, name string) *corev1.Volume {
	t.Helper()
	for i, v := range pod.Volumes {
		if v.Name == name {
			return &pod.Volumes[i]
		}
	}
	t.Fatalf("no volume %q", name)
	return nil
}

func mount(t *testing.T, c *corev1.Container, name string) *corev1.VolumeMount {
	t.Helper()
	for i, m := range c.VolumeMounts {
		if m.Name == name {
			return &c.VolumeMounts[i]
		}
	}
	t.Fatalf("container %s does not mount volume %q", c.Name, name)
	return nil
}

// tolerates is the scheduler's rule for one toleration and one taint.
func tolerates(tol corev1.Toleration, taint corev1.Taint) bool {
	if tol.Effect != "" && tol.Effect != taint.Effect {
		return false
	}
	if tol.Key == "" {
		return tol.Operator == corev1.TolerationOpExists
	}
	if tol.Key != taint.Key {
		return false
	}
	switch tol.Operator {
	case corev1.TolerationOpExists:
		return true
	case "", corev1.TolerationOpEqual:
		return tol.Value == taint.Value
	}
	return false
}

func toleratesAny(tols []corev1.Toleration, taint corev1.Taint) bool {
	return slices.ContainsFunc(tols, func(tol corev1.Toleration) bool { return tolerates(tol, taint) })
}

func TestEveryManifestDecodesStrictly(t *testing.T) {
	var files []string
	err := filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && (strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")) {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{
		"base/kustomization.yaml", "base/namespace.yaml", "base/serviceaccount.yaml",
		"base/configmap.yaml", "base/secret-example.yaml", "base/daemonset.yaml",
		"overlays/kubeadm/kustomization.yaml", "overlays/k3s/kustomization.yaml",
		"overlays/webhook/kustomization.yaml", "overlays/webhook/namespace.yaml",
		"overlays/webhook/serviceaccount.yaml", "overlays/webhook/configmap.yaml",
		"overlays/webhook/statefulset.yaml", "overlays/webhook/service.yaml",
		"overlays/webhook/networkpolicy.yaml", "overlays/webhook/poddisruptionbudget.yaml",
		"overlays/webhook/secret-example.yaml",
	} {
		if !slices.Contains(files, f) {
			t.Errorf("missing %s", f)
		}
	}
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			for _, o := range decodeFile(t, f) {
				if strings.HasSuffix(f, ".yaml") && !strings.HasSuffix(f, "kustomization.yaml") {
					if m, ok := o.obj.(interface{ GetNamespace() string }); ok {
						if _, isNS := o.obj.(*corev1.Namespace); !isNS && m.GetNamespace() != "audittail" {
							t.Errorf("%s: namespace %q, want audittail", f, m.GetNamespace())
						}
					}
				}
			}
		})
	}
}

func TestOverlays(t *testing.T) {
	for _, ov := range overlays {
		t.Run(path.Base(ov.dir), func(t *testing.T) {
			r := render(t, ov.dir)
			ds := r.daemonSet
			pod := ds.Spec.Template.Spec
			c := container(t, ds)

			t.Run("schedules only on control-plane nodes", func(t *testing.T) {
				v, ok := pod.NodeSelector[controlPlaneLabel]
				if !ok || v != ov.controlPlaneValue {
					t.Errorf("nodeSelector %s = %q (set %v), want %q", controlPlaneLabel, v, ok, ov.controlPlaneValue)
				}
				if pod.Affinity != nil && pod.Affinity.NodeAffinity != nil {
					t.Errorf("node affinity would widen or narrow the nodeSelector; keep scheduling in one place")
				}
			})

			t.Run("tolerates the control-plane taints and no others", func(t *testing.T) {
				for _, taint := range append(slices.Clone(controlPlaneTaints), ov.extraTaints...) {
					if !toleratesAny(pod.Tolerations, taint) {
						t.Errorf("does not tolerate %s:%s", taint.Key, taint.Effect)
					}
				}
				for _, taint := range []corev1.Taint{
					{Key: "node.kubernetes.io/unschedulable", Effect: corev1.TaintEffectNoSchedule},
					{Key: "dedicated", Value: "gpu", Effect: corev1.TaintEffectNoSchedule},
				} {
					if toleratesAny(pod.Tolerations, taint) {
						t.Errorf("tolerates %s:%s, which is not a control-plane taint", taint.Key, taint.Effect)
					}
				}
			})

			t.Run("mounts the node's audit directory read-only", func(t *testing.T) {
				v := volume(t, ds, "audit-log")
				if v.HostPath == nil || v.HostPath.Path != ov.auditHostDir {
					t.Fatalf("audit-log volume = %+v, want hostPath %s", v.VolumeSource, ov.auditHostDir)
				}
				if v.HostPath.Type == nil || *v.HostPath.Type != corev1.HostPathDirectory {
					t.Errorf("audit-log hostPath type = %v, want Directory (fail fast when auditing is off)", v.HostPath.Type)
				}
				m := mount(t, c, "audit-log")
				if !m.ReadOnly {
					t.Errorf("audit-log is mounted read-write")
				}
				if m.MountPath != auditMountPath {
					t.Errorf("audit-log mounted at %s, want %s", m.MountPath, auditMountPath)
				}
			})

			t.Run("follows audit.log in the mounted directory", func(t *testing.T) {
				if len(r.config.Inputs) != 1 {
					t.Fatalf("want one input, got %d", len(r.config.Inputs))
				}
				if got, want := r.config.Inputs[0].Path, path.Join(auditMountPath, "audit.log"); got != want {
					t.Errorf("inputs[0].path = %s, want %s", got, want)
				}
			})

			t.Run("keeps its checkpoint in a host directory", func(t *testing.T) {
				v := volume(t, ds, "state")
				if v.HostPath == nil || v.HostPath.Path != "/var/lib/audittail" {
					t.Fatalf("state volume = %+v, want hostPath /var/lib/audittail", v.VolumeSource)
				}
				if v.HostPath.Type == nil || *v.HostPath.Type != corev1.HostPathDirectoryOrCreate {
					t.Errorf("state hostPath type = %v, want DirectoryOrCreate", v.HostPath.Type)
				}
				m := mount(t, c, "state")
				if m.ReadOnly {
					t.Errorf("state is mounted read-only; the checkpoint could not be written")
				}
				if m.MountPath != r.config.StateDir {
					t.Errorf("state mounted at %s but state_dir is %s", m.MountPath, r.config.StateDir)
				}
			})

			t.Run("writes nothing but its state directory", func(t *testing.T) {
				for _, m := range c.VolumeMounts {
					if !m.ReadOnly && m.Name != "state" {
						t.Errorf("volume %s is mounted read-write", m.Name)
					}
				}
				sc := c.SecurityContext
				if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
					t.Errorf("readOnlyRootFilesystem is not true")
				}
			})

			t.Run("runs as root with every capability dropped", func(t *testing.T) {
				sc := c.SecurityContext
				if sc == nil {
					t.Fatal("no container securityContext")
				}
				if sc.RunAsUser == nil || *sc.RunAsUser != 0 {
					t.Errorf("runAsUser = %v, want 0 (the owner of the 0600 audit log)", sc.RunAsUser)
				}
				if sc.Capabilities == nil || !reflect.DeepEqual(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
					t.Errorf("capabilities.drop = %v, want [ALL]", sc.Capabilities)
				}
				if sc.Capabilities != nil && len(sc.Capabilities.Add) != 0 {
					t.Errorf("capabilities.add = %v, want none: uid 0 reads its own 0600 file without one", sc.Capabilities.Add)
				}
				if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
					t.Errorf("allowPrivilegeEscalation is not false")
				}
				if sc.Privileged != nil && *sc.Privileged {
					t.Errorf("privileged")
				}
				if sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
					t.Errorf("container seccompProfile = %v, want RuntimeDefault", sc.SeccompProfile)
				}
				if ps := pod.SecurityContext; ps == nil || ps.SeccompProfile == nil || ps.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
					t.Errorf("pod seccompProfile is not RuntimeDefault")
				}
				if pod.HostNetwork || pod.HostPID || pod.HostIPC {
					t.Errorf("shares a host namespace (network %v, pid %v, ipc %v)", pod.HostNetwork, pod.HostPID, pod.HostIPC)
				}
			})

			t.Run("never gets a service account token", func(t *testing.T) {
				if b := r.serviceAcct.AutomountServiceAccountToken; b == nil || *b {
					t.Errorf("ServiceAccount automountServiceAccountToken is not false")
				}
				if b := pod.AutomountServiceAccountToken; b == nil || *b {
					t.Errorf("pod automountServiceAccountToken is not false")
				}
				if pod.ServiceAccountName != r.serviceAcct.Name {
					t.Errorf("serviceAccountName = %q, want %q", pod.ServiceAccountName, r.serviceAcct.Name)
				}
			})

			t.Run("probes /healthz and /readyz on the metrics port", func(t *testing.T) {
				for _, p := range []struct {
					name  string
					probe *corev1.Probe
					path  string
				}{{"liveness", c.LivenessProbe, "/healthz"}, {"readiness", c.ReadinessProbe, "/readyz"}} {
					if p.probe == nil || p.probe.HTTPGet == nil {
						t.Errorf("no %s httpGet probe", p.name)
						continue
					}
					if p.probe.HTTPGet.Path != p.path {
						t.Errorf("%s probe path = %s, want %s", p.name, p.probe.HTTPGet.Path, p.path)
					}
					if got := resolvePort(c, p.probe.HTTPGet.Port.String()); got != metricsPort {
						t.Errorf("%s probe port %s = %d, want %d", p.name, p.probe.HTTPGet.Port.String(), got, metricsPort)
					}
				}
				host, port, err := net.SplitHostPort(r.config.Metrics.Listen)
				if err != nil {
					t.Fatalf("metrics.listen %q: %v", r.config.Metrics.Listen, err)
				}
				if port != strconv.Itoa(metricsPort) {
					t.Errorf("metrics.listen port %s, want %d", port, metricsPort)
				}
				if ip := net.ParseIP(host); ip == nil || ip.IsLoopback() {
					t.Errorf("metrics.listen %q: the kubelet probes the pod IP, so listen on 0.0.0.0", r.config.Metrics.Listen)
				}
			})

			t.Run("sets resource requests and limits", func(t *testing.T) {
				res := c.Resources
				for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
					req, okReq := res.Requests[name]
					lim, okLim := res.Limits[name]
					if !okReq || !okLim {
						t.Errorf("%s: request set %v, limit set %v", name, okReq, okLim)
						continue
					}
					if req.Cmp(lim) > 0 {
						t.Errorf("%s: request %s above limit %s", name, req.String(), lim.String())
					}
				}
				// The agent targets < 64 MB RSS; the request reserves it.
				if req := res.Requests[corev1.ResourceMemory]; req.Cmp(resource.MustParse("64Mi")) < 0 {
					t.Errorf("memory request %s is below the agent's 64Mi working set", req.String())
				}
			})

			t.Run("is system-node-critical", func(t *testing.T) {
				if pod.PriorityClassName != "system-node-critical" {
					t.Errorf("priorityClassName = %q", pod.PriorityClassName)
				}
			})

			t.Run("gives the agent time to flush on SIGTERM", func(t *testing.T) {
				if pod.TerminationGracePeriodSeconds == nil {
					t.Fatal("terminationGracePeriodSeconds not set")
				}
				grace := time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second
				if grace <= r.config.ShutdownTimeout {
					t.Errorf("terminationGracePeriodSeconds %s is not longer than shutdown_timeout %s", grace, r.config.ShutdownTimeout)
				}
			})

			t.Run("knows its node name", func(t *testing.T) {
				for _, e := range c.Env {
					if e.Name == "NODE_NAME" {
						if e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
							t.Errorf("NODE_NAME does not come from spec.nodeName")
						}
						return
					}
				}
				t.Errorf("no NODE_NAME env")
			})

			t.Run("reads its config from the ConfigMap", func(t *testing.T) {
				v := volume(t, ds, "config")
				if v.ConfigMap == nil || v.ConfigMap.Name != r.configMap.Name {
					t.Fatalf("config volume = %+v, want ConfigMap %s", v.VolumeSource, r.configMap.Name)
				}
				m := mount(t, c, "config")
				if path.Join(m.MountPath, "config.yaml") != configPath {
					t.Errorf("config.yaml lands at %s, want %s", path.Join(m.MountPath, "config.yaml"), configPath)
				}
				if i := slices.Index(c.Args, "--config"); i < 0 || i+1 >= len(c.Args) || c.Args[i+1] != configPath {
					t.Errorf("args %q do not name --config %s", c.Args, configPath)
				}
				if len(c.Command) != 0 {
					t.Errorf("command %q overrides the image's entrypoint", c.Command)
				}
			})

			t.Run("reads output keys from files of the Secret", func(t *testing.T) {
				v := volume(t, ds, "secrets")
				if v.Secret == nil {
					t.Fatalf("secrets volume is not a Secret")
				}
				m := mount(t, c, "secrets")
				if !m.ReadOnly {
					t.Errorf("secrets mounted read-write")
				}
				if v.Secret.DefaultMode == nil || *v.Secret.DefaultMode&0o077 != 0 {
					t.Errorf("secret files are readable by group or others (defaultMode %v)", v.Secret.DefaultMode)
				}
				example := exampleSecret(t)
				if v.Secret.SecretName != example.Name {
					t.Errorf("secrets volume uses Secret %q, the example is %q", v.Secret.SecretName, example.Name)
				}
				// Every *_file in the config points into the Secret's mount,
				// at a key the example Secret documents.
				files := fileKeys(t, r.configMap.Data["config.yaml"])
				if len(files) == 0 {
					t.Errorf("config.yaml uses no *_file key")
				}
				for key, f := range files {
					dir, name := path.Split(f)
					if path.Clean(dir) != m.MountPath {
						t.Errorf("%s: %s is not in the Secret's mount %s", key, f, m.MountPath)
					}
					if _, ok := example.StringData[name]; !ok {
						t.Errorf("%s: the example Secret has no key %q", key, name)
					}
				}
			})

			t.Run("ships the placeholder image", func(t *testing.T) {
				if c.Image != "ghcr.io/audittail/audittail:latest" {
					t.Errorf("image = %s (docs/deployment.md documents the placeholder; change both)", c.Image)
				}
			})

			t.Run("exempts only its own namespace from Pod Security", func(t *testing.T) {
				if r.namespace.Name != "audittail" || ds.Namespace != "audittail" {
					t.Errorf("namespace %q, DaemonSet in %q", r.namespace.Name, ds.Namespace)
				}
				if got := r.namespace.Labels["pod-security.kubernetes.io/enforce"]; got != "privileged" {
					t.Errorf("pod-security enforce = %q; hostPath volumes need privileged", got)
				}
			})
		})
	}
}

func resolvePort(c *corev1.Container, port string) int {
	if n, err := strconv.Atoi(port); err == nil {
		return n
	}
	for _, p := range c.Ports {
		if p.Name == port {
			return int(p.ContainerPort)
		}
	}
	return -1
}

func exampleSecret(t *testing.T) *corev1.Secret {
	t.Helper()
	return exampleSecretIn(t, "base/secret-example.yaml")
}

// exampleSecretIn decodes an example Secret and checks that its values are
// placeholders.
func exampleSecretIn(t *testing.T, file string) *corev1.Secret {
	t.Helper()
	s := decodeFile(t, file)[0].obj.(*corev1.Secret)
	for k, v := range s.StringData {
		if !strings.HasPrefix(v, "EXAMPLE-") {
			t.Errorf("%s: %s = %q does not look like a placeholder (start it with EXAMPLE-)", file, k, v)
		}
	}
	if len(s.Data) != 0 {
		t.Errorf("%s: use stringData, so the placeholders are readable", file)
	}
	return s
}

// fileKeys returns the *_file keys of the outputs and their values.
func fileKeys(t *testing.T, config string) map[string]string {
	t.Helper()
	var raw struct {
		Outputs []map[string]any `json:"outputs"`
	}
	if err := yaml.Unmarshal([]byte(config), &raw); err != nil {
		t.Fatal(err)
	}
	keys := map[string]string{}
	for i, o := range raw.Outputs {
		for k, v := range o {
			if s, ok := v.(string); ok && strings.HasSuffix(k, "_file") && k != "dead_letter" {
				keys[fmt.Sprintf("outputs[%d].%s", i, k)] = s
			}
		}
	}
	return keys
}

// sameJSON compares two API objects as the API server would store them
// (a resource.Quantity keeps a cached string, so DeepEqual is too strict).
func sameJSON(t *testing.T, a, b any) bool {
	t.Helper()
	ja, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	jb, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(ja, jb)
}

func TestExampleSecretIsNotApplied(t *testing.T) {
	for _, dir := range []string{"base", webhookDir} {
		k := decodeFile(t, dir+"/kustomization.yaml")[0].obj.(*kustomization)
		if slices.Contains(k.Resources, "secret-example.yaml") {
			t.Errorf("%s/kustomization.yaml lists secret-example.yaml: every apply would overwrite the real keys with placeholders", dir)
		}
		exampleSecretIn(t, dir+"/secret-example.yaml")
	}
}

func TestOverlaysChangeOnlyWhatDiffers(t *testing.T) {
	// Each overlay patches the DaemonSet only; the ConfigMap (and so the
	// agent's view of the files) is the same everywhere.
	base := render(t, "base")
	for _, ov := range overlays {
		r := render(t, ov.dir)
		if !sameJSON(t, base.configMap, r.configMap) {
			t.Errorf("%s changes the ConfigMap", ov.dir)
		}
		if !sameJSON(t, container(t, base.daemonSet), container(t, r.daemonSet)) {
			t.Errorf("%s changes the container; only volumes and scheduling differ", ov.dir)
		}
	}
}

// TestKustomizeAgrees renders each overlay with `kubectl kustomize` when
// kubectl is installed and compares the pod template with ours, so the
// simple rendering above cannot drift from kustomize's.
func TestKustomizeAgrees(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl not on PATH; the overlays were rendered with strategic merge patch only")
	}
	for _, ov := range overlays {
		t.Run(path.Base(ov.dir), func(t *testing.T) {
			out, err := exec.Command(kubectl, "kustomize", ov.dir).CombinedOutput()
			if err != nil {
				t.Fatalf("kubectl kustomize %s: %v\n%s", ov.dir, err, out)
			}
			var theirs *appsv1.DaemonSet
			for _, doc := range splitDocuments(out) {
				var meta struct {
					Kind string `json:"kind"`
				}
				if err := yaml.Unmarshal(doc, &meta); err != nil {
					t.Fatal(err)
				}
				if meta.Kind == "DaemonSet" {
					theirs = &appsv1.DaemonSet{}
					if err := yaml.UnmarshalStrict(doc, theirs); err != nil {
						t.Fatal(err)
					}
				}
			}
			if theirs == nil {
				t.Fatal("kubectl kustomize rendered no DaemonSet")
			}
			ours := render(t, ov.dir).daemonSet
			if !sameJSON(t, ours.Spec.Template.Spec, theirs.Spec.Template.Spec) {
				a, _ := yaml.Marshal(ours.Spec.Template.Spec)
				b, _ := yaml.Marshal(theirs.Spec.Template.Spec)
				t.Errorf("pod spec differs from kubectl kustomize\nours:\n%s\nkustomize:\n%s", a, b)
			}
		})
	}
	t.Run(path.Base(webhookDir), func(t *testing.T) {
		out, err := exec.Command(kubectl, "kustomize", webhookDir).CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl kustomize %s: %v\n%s", webhookDir, err, out)
		}
		var kinds []string
		var theirs *appsv1.StatefulSet
		for _, doc := range splitDocuments(out) {
			var meta struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
				Metadata   struct {
					Name string `json:"name"`
				} `json:"metadata"`
			}
			if err := yaml.Unmarshal(doc, &meta); err != nil {
				t.Fatal(err)
			}
			obj, err := newObject(meta.APIVersion, meta.Kind)
			if err != nil {
				t.Fatal(err)
			}
			if err := yaml.UnmarshalStrict(doc, obj); err != nil {
				t.Fatalf("kubectl kustomize %s: %s: %v", webhookDir, meta.Kind, err)
			}
			kinds = append(kinds, "v1."+meta.Kind+"/"+meta.Metadata.Name)
			if sts, ok := obj.(*appsv1.StatefulSet); ok {
				theirs = sts
			}
		}
		slices.Sort(kinds)
		if !slices.Equal(kinds, webhookKinds) {
			t.Errorf("kubectl kustomize renders %q, want %q", kinds, webhookKinds)
		}
		if theirs == nil {
			t.Fatal("kubectl kustomize rendered no StatefulSet")
		}
		ours := renderWebhook(t).statefulSet
		if !sameJSON(t, ours.Spec.Template.Spec, theirs.Spec.Template.Spec) || !sameJSON(t, ours.Spec.VolumeClaimTemplates, theirs.Spec.VolumeClaimTemplates) {
			a, _ := yaml.Marshal(ours.Spec)
			b, _ := yaml.Marshal(theirs.Spec)
			t.Errorf("StatefulSet spec differs from kubectl kustomize\nours:\n%s\nkustomize:\n%s", a, b)
		}
	})
}

// TestImageMatchesDaemonSet keeps the Dockerfile and the DaemonSet in step:
// the same uid, the same binary, the same config path, the same Go.
func TestImageMatchesDaemonSet(t *testing.T) {
	data, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(data)
	final := df[strings.LastIndex(df, "\nFROM "):]

	t.Run("runs as root, confined by the DaemonSet", func(t *testing.T) {
		if !regexp.MustCompile(`(?m)^USER 0:0$`).MatchString(final) {
			t.Errorf("the final stage does not declare USER 0:0")
		}
	})
	t.Run("starts the agent on the config the ConfigMap provides", func(t *testing.T) {
		if !strings.Contains(final, `ENTRYPOINT ["/usr/local/bin/audittail"]`) {
			t.Errorf("ENTRYPOINT is not the audittail binary")
		}
		if !strings.Contains(final, `CMD ["run", "--config", "`+configPath+`"]`) {
			t.Errorf("CMD does not run --config %s", configPath)
		}
	})
	t.Run("builds a static, stamped binary with the Go of go.mod", func(t *testing.T) {
		for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-X main.version="} {
			if !strings.Contains(df, want) {
				t.Errorf("the build does not use %s", want)
			}
		}
		mod, err := os.ReadFile("../go.mod")
		if err != nil {
			t.Fatal(err)
		}
		m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(mod)
		if m == nil {
			t.Fatal("no go directive in go.mod")
		}
		if !strings.Contains(df, "\nARG GO_VERSION="+string(m[1])+"\n") || !strings.Contains(df, "FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}") {
			t.Errorf("the builder is not golang:${GO_VERSION} with ARG GO_VERSION=%s (go.mod)", m[1])
		}
		if !strings.Contains(final, "gcr.io/distroless/static-debian12") {
			t.Errorf("the final stage is not distroless static")
		}
	})
}

const (
	webhookDir = "overlays/webhook"
	// webhookPort is the port the Service and the webhook kubeconfig name.
	webhookPort = 8443
	// webhookPath is what examples/webhook's kubeconfig posts to.
	webhookPath = "/audit/webhook/event"
)

// webhookKinds is every object overlays/webhook renders, sorted.
var webhookKinds = []string{
	"v1.ConfigMap/audittail-config", "v1.Namespace/audittail", "v1.NetworkPolicy/audittail-webhook",
	"v1.PodDisruptionBudget/audittail", "v1.Service/audittail-webhook", "v1.ServiceAccount/audittail",
	"v1.StatefulSet/audittail",
}

// webhookRendering is what overlays/webhook renders.
type webhookRendering struct {
	kinds       []string
	statefulSet *appsv1.StatefulSet
	service     *corev1.Service
	policy      *networkingv1.NetworkPolicy
	pdb         *policyv1.PodDisruptionBudget
	configMap   *corev1.ConfigMap
	namespace   *corev1.Namespace
	serviceAcct *corev1.ServiceAccount
	config      *agent.Config
}

func renderWebhook(t *testing.T) webhookRendering {
	t.Helper()
	var r webhookRendering
	for _, o := range build(t, webhookDir) {
		meta := o.obj.(interface{ GetName() string })
		kind := strings.TrimPrefix(fmt.Sprintf("%T", o.obj), "*")
		r.kinds = append(r.kinds, kind+"/"+meta.GetName())
		switch v := o.obj.(type) {
		case *appsv1.StatefulSet:
			r.statefulSet = v
		case *corev1.Service:
			r.service = v
		case *networkingv1.NetworkPolicy:
			r.policy = v
		case *policyv1.PodDisruptionBudget:
			r.pdb = v
		case *corev1.ConfigMap:
			r.configMap = v
		case *corev1.Namespace:
			r.namespace = v
		case *corev1.ServiceAccount:
			r.serviceAcct = v
		}
	}
	slices.Sort(r.kinds)
	if r.statefulSet == nil || r.service == nil || r.policy == nil || r.pdb == nil || r.configMap == nil || r.namespace == nil || r.serviceAcct == nil {
		t.Fatalf("%s renders %q; want a StatefulSet, Service, NetworkPolicy, PodDisruptionBudget, ConfigMap, Namespace and ServiceAccount", webhookDir, r.kinds)
	}
	t.Setenv("NODE_NAME", "node-1")
	cfg, err := agent.ParseConfig([]byte(r.configMap.Data["config.yaml"]))
	if err != nil {
		t.Fatalf("%s: ConfigMap config.yaml: %v", webhookDir, err)
	}
	r.config = cfg
	return r
}

// selects reports whether a label selector matches a set of labels.
func selects(t *testing.T, sel *metav1.LabelSelector, set map[string]string) bool {
	t.Helper()
	if sel == nil {
		return false
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Fatalf("selector %v: %v", sel, err)
	}
	return s.Matches(labels.Set(set))
}

// source is a pod that may try to connect.
type source struct {
	namespace map[string]string // the namespace's labels
	pod       map[string]string // the pod's labels
}

func inNamespace(ns string, pod map[string]string) source {
	return source{namespace: map[string]string{"kubernetes.io/metadata.name": ns}, pod: pod}
}

// admits evaluates a NetworkPolicy's ingress rules as the API defines them
// for a connection from src to a container port of a selected pod.
func admits(t *testing.T, np *networkingv1.NetworkPolicy, c *corev1.Container, src source, port int) bool {
	t.Helper()
	ownNS := map[string]string{"kubernetes.io/metadata.name": np.Namespace}
	for _, rule := range np.Spec.Ingress {
		portOK := len(rule.Ports) == 0
		for _, p := range rule.Ports {
			if p.Protocol != nil && *p.Protocol != corev1.ProtocolTCP {
				continue
			}
			if p.Port == nil || resolvePort(c, p.Port.String()) == port {
				portOK = true
			}
		}
		if !portOK {
			continue
		}
		if len(rule.From) == 0 {
			return true
		}
		for _, peer := range rule.From {
			switch {
			case peer.IPBlock != nil:
				// Not a pod.
			case peer.NamespaceSelector != nil && peer.PodSelector != nil:
				if selects(t, peer.NamespaceSelector, src.namespace) && selects(t, peer.PodSelector, src.pod) {
					return true
				}
			case peer.NamespaceSelector != nil:
				if selects(t, peer.NamespaceSelector, src.namespace) {
					return true
				}
			case peer.PodSelector != nil:
				if reflect.DeepEqual(src.namespace, ownNS) && selects(t, peer.PodSelector, src.pod) {
					return true
				}
			}
		}
	}
	return false
}

func TestWebhookOverlay(t *testing.T) {
	r := renderWebhook(t)
	sts := r.statefulSet
	pod := sts.Spec.Template.Spec
	podLabels := sts.Spec.Template.Labels
	c := podContainer(t, &pod)
	if len(r.config.Inputs) != 1 || r.config.Inputs[0].Type != agent.InputWebhook {
		t.Fatalf("want one webhook input, got %+v", r.config.Inputs)
	}
	in := r.config.Inputs[0]
	claimMount := func(t *testing.T) *corev1.VolumeMount {
		t.Helper()
		if len(sts.Spec.VolumeClaimTemplates) != 1 {
			t.Fatalf("want one volumeClaimTemplate, got %d", len(sts.Spec.VolumeClaimTemplates))
		}
		return mount(t, c, sts.Spec.VolumeClaimTemplates[0].Name)
	}

	t.Run("renders no DaemonSet and no Secret", func(t *testing.T) {
		// No DaemonSet: a managed cluster has no control-plane node to run
		// it on. No Secret: the example must not overwrite the real one.
		if !slices.Equal(r.kinds, webhookKinds) {
			t.Errorf("renders %q, want exactly %q", r.kinds, webhookKinds)
		}
	})

	t.Run("listens where the Service and the webhook kubeconfig point", func(t *testing.T) {
		host, port, err := net.SplitHostPort(in.Listen)
		if err != nil {
			t.Fatal(err)
		}
		if ip := net.ParseIP(host); ip == nil || !ip.IsUnspecified() {
			t.Errorf("listen %q: the Service reaches the pod IP, so listen on 0.0.0.0", in.Listen)
		}
		if port != strconv.Itoa(webhookPort) {
			t.Errorf("listen port %s, want %d", port, webhookPort)
		}
		if in.Path != webhookPath {
			t.Errorf("path = %q, want %s (examples/webhook/kubeconfig.yaml)", in.Path, webhookPath)
		}
		if in.Insecure {
			t.Errorf("insecure: true; kube-apiserver's token would cross the tunnel in clear")
		}
		var found bool
		for _, p := range r.service.Spec.Ports {
			if p.Port == webhookPort {
				found = true
				if got := resolvePort(c, p.TargetPort.String()); got != webhookPort {
					t.Errorf("Service port %d targets %s = container port %d, want %d", p.Port, p.TargetPort.String(), got, webhookPort)
				}
			}
		}
		if !found {
			t.Errorf("Service has no port %d", webhookPort)
		}
		if !selects(t, &metav1.LabelSelector{MatchLabels: r.service.Spec.Selector}, podLabels) || len(r.service.Spec.Selector) == 0 {
			t.Errorf("Service selector %v does not select the pods (%v)", r.service.Spec.Selector, podLabels)
		}
		if sts.Spec.ServiceName != r.service.Name {
			t.Errorf("serviceName = %q, want %q", sts.Spec.ServiceName, r.service.Name)
		}
	})

	t.Run("keeps sending to a replica whose outputs fail, so its spool takes the events", func(t *testing.T) {
		if !r.service.Spec.PublishNotReadyAddresses {
			t.Errorf("publishNotReadyAddresses is false: an output outage would take every replica out of the Service and kube-apiserver would drop the events")
		}
	})

	t.Run("keeps its spool and checkpoint on a claim per replica", func(t *testing.T) {
		m := claimMount(t)
		if m.ReadOnly {
			t.Errorf("the claim is mounted read-only")
		}
		if m.MountPath != r.config.StateDir {
			t.Errorf("claim mounted at %s but state_dir is %s", m.MountPath, r.config.StateDir)
		}
		if rel, err := filepath.Rel(m.MountPath, in.Spool.Dir); err != nil || strings.HasPrefix(rel, "..") {
			t.Errorf("spool.dir %s is not on the claim (%s)", in.Spool.Dir, m.MountPath)
		}
		for _, v := range pod.Volumes {
			if v.Name == m.Name {
				t.Errorf("pod volume %q shadows the volumeClaimTemplate", v.Name)
			}
		}
		pvc := sts.Spec.VolumeClaimTemplates[0]
		if !slices.Contains(pvc.Spec.AccessModes, corev1.ReadWriteOnce) {
			t.Errorf("claim access modes %v, want ReadWriteOnce (one replica, one spool)", pvc.Spec.AccessModes)
		}
		size := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
		if size.Value() < int64(in.Spool.MaxBytes)+int64(in.MaxBodyBytes) {
			t.Errorf("claim of %s cannot hold spool.max_bytes %d and a request", size.String(), in.Spool.MaxBytes)
		}
		if p := sts.Spec.PersistentVolumeClaimRetentionPolicy; p == nil ||
			p.WhenScaled != appsv1.RetainPersistentVolumeClaimRetentionPolicyType ||
			p.WhenDeleted != appsv1.RetainPersistentVolumeClaimRetentionPolicyType {
			t.Errorf("persistentVolumeClaimRetentionPolicy = %+v: a claim may hold unshipped events, retain it", p)
		}
		for _, v := range pod.Volumes {
			if v.HostPath != nil || v.EmptyDir != nil {
				t.Errorf("volume %s is a hostPath or emptyDir: the spool must be on the claim", v.Name)
			}
		}
	})

	t.Run("writes nothing but its claim", func(t *testing.T) {
		m := claimMount(t)
		for _, vm := range c.VolumeMounts {
			if !vm.ReadOnly && vm.Name != m.Name {
				t.Errorf("volume %s is mounted read-write", vm.Name)
			}
		}
		if sc := c.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("readOnlyRootFilesystem is not true")
		}
	})

	t.Run("runs non-root with every capability dropped", func(t *testing.T) {
		ps, sc := pod.SecurityContext, c.SecurityContext
		if ps == nil || sc == nil {
			t.Fatal("no pod or container securityContext")
		}
		for _, s := range []struct {
			where      string
			nonRoot    *bool
			uid, gid   *int64
			seccompSet *corev1.SeccompProfile
		}{{"pod", ps.RunAsNonRoot, ps.RunAsUser, ps.RunAsGroup, ps.SeccompProfile}, {"container", sc.RunAsNonRoot, sc.RunAsUser, sc.RunAsGroup, sc.SeccompProfile}} {
			if s.nonRoot == nil || !*s.nonRoot {
				t.Errorf("%s runAsNonRoot is not true", s.where)
			}
			// A fixed uid: the image says USER 0:0 (for the DaemonSet), and
			// runAsNonRoot alone would refuse to start it.
			if s.uid == nil || *s.uid == 0 || s.gid == nil || *s.gid == 0 {
				t.Errorf("%s runAsUser %s runAsGroup %s, want a fixed non-zero uid and gid", s.where, show(s.uid), show(s.gid))
			}
			if s.seccompSet == nil || s.seccompSet.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("%s seccompProfile = %v, want RuntimeDefault", s.where, s.seccompSet)
			}
		}
		if ps.FSGroup == nil || *ps.FSGroup == 0 {
			t.Errorf("fsGroup = %s: the claim would not be writable by a non-root uid", show(ps.FSGroup))
		}
		if sc.Capabilities == nil || !reflect.DeepEqual(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 {
			t.Errorf("capabilities = %v, want drop [ALL] and no add", sc.Capabilities)
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("allowPrivilegeEscalation is not false")
		}
		if sc.Privileged != nil && *sc.Privileged {
			t.Errorf("privileged")
		}
		if pod.HostNetwork || pod.HostPID || pod.HostIPC {
			t.Errorf("shares a host namespace (network %v, pid %v, ipc %v)", pod.HostNetwork, pod.HostPID, pod.HostIPC)
		}
		if got := r.namespace.Labels["pod-security.kubernetes.io/enforce"]; got != "restricted" {
			t.Errorf("pod-security enforce = %q; nothing here needs more than restricted", got)
		}
	})

	t.Run("reads its certificate, client CA and token from a Secret, as its group", func(t *testing.T) {
		example := exampleSecretIn(t, webhookDir+"/secret-example.yaml")
		v := podVolume(t, &pod, "webhook-tls")
		if v.Secret == nil || v.Secret.SecretName != example.Name {
			t.Fatalf("webhook-tls volume = %+v, want Secret %s", v.VolumeSource, example.Name)
		}
		if v.Secret.Optional != nil && *v.Secret.Optional {
			t.Errorf("the webhook's Secret is optional; the input cannot start without it")
		}
		checkMode(t, v)
		m := mount(t, c, "webhook-tls")
		if !m.ReadOnly {
			t.Errorf("webhook-tls is mounted read-write")
		}
		files := map[string]string{
			"tls.cert_file": in.TLS.CertFile, "tls.key_file": in.TLS.KeyFile,
			"tls.client_ca_file": in.TLS.ClientCAFile, "auth.bearer_token_file": in.Auth.BearerTokenFile,
		}
		for key, f := range files {
			if f == "" {
				t.Errorf("%s is not set", key)
				continue
			}
			dir, name := path.Split(f)
			if path.Clean(dir) != m.MountPath {
				t.Errorf("%s: %s is not in the Secret's mount %s", key, f, m.MountPath)
			}
			if _, ok := example.StringData[name]; !ok {
				t.Errorf("%s: the example Secret has no key %q", key, name)
			}
		}
	})

	t.Run("reads output keys from files of the outputs Secret", func(t *testing.T) {
		example := exampleSecret(t)
		v := podVolume(t, &pod, "secrets")
		if v.Secret == nil || v.Secret.SecretName != example.Name {
			t.Fatalf("secrets volume = %+v, want Secret %s", v.VolumeSource, example.Name)
		}
		checkMode(t, v)
		m := mount(t, c, "secrets")
		if !m.ReadOnly {
			t.Errorf("secrets mounted read-write")
		}
		for key, f := range fileKeys(t, r.configMap.Data["config.yaml"]) {
			dir, name := path.Split(f)
			if path.Clean(dir) != m.MountPath {
				t.Errorf("%s: %s is not in the Secret's mount %s", key, f, m.MountPath)
			}
			if _, ok := example.StringData[name]; !ok {
				t.Errorf("%s: the example Secret has no key %q", key, name)
			}
		}
	})

	t.Run("admits only kube-apiserver's tunnel to the webhook and monitoring to the metrics", func(t *testing.T) {
		np := r.policy
		if !selects(t, &np.Spec.PodSelector, podLabels) {
			t.Fatalf("NetworkPolicy podSelector %v does not select the pods", np.Spec.PodSelector)
		}
		if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
			t.Errorf("policyTypes %v do not include Ingress", np.Spec.PolicyTypes)
		}
		konnectivity := inNamespace("kube-system", map[string]string{"app": "konnectivity-agent"})
		for _, k := range []struct {
			name string
			src  source
			port int
			want bool
		}{
			{"IBM Cloud's konnectivity-agent to the webhook", konnectivity, webhookPort, true},
			{"IBM Cloud's OpenVPN client to the webhook", inNamespace("kube-system", map[string]string{"app": "vpn"}), webhookPort, true},
			{"upstream konnectivity-agent to the webhook", inNamespace("kube-system", map[string]string{"k8s-app": "konnectivity-agent"}), webhookPort, true},
			{"the tunnel to the metrics", konnectivity, metricsPort, false},
			{"monitoring to the metrics", inNamespace("monitoring", map[string]string{"app.kubernetes.io/name": "prometheus"}), metricsPort, true},
			{"monitoring to the webhook", inNamespace("monitoring", map[string]string{"app.kubernetes.io/name": "prometheus"}), webhookPort, false},
			{"another kube-system pod to the webhook", inNamespace("kube-system", map[string]string{"k8s-app": "kube-dns"}), webhookPort, false},
			{"a pod labelled like the tunnel elsewhere to the webhook", inNamespace("default", map[string]string{"app": "konnectivity-agent"}), webhookPort, false},
			{"a pod of audittail's namespace to the webhook", inNamespace("audittail", podLabels), webhookPort, false},
		} {
			if got := admits(t, np, c, k.src, k.port); got != k.want {
				t.Errorf("%s (port %d): admitted %v, want %v", k.name, k.port, got, k.want)
			}
		}
	})

	t.Run("is disrupted one replica at a time", func(t *testing.T) {
		pdb := r.pdb
		if !selects(t, pdb.Spec.Selector, podLabels) {
			t.Fatalf("PodDisruptionBudget selector does not select the pods")
		}
		if sts.Spec.Replicas == nil || *sts.Spec.Replicas < 2 {
			t.Errorf("replicas = %s: one replica leaves kube-apiserver nowhere to post during a restart", show(sts.Spec.Replicas))
		}
		if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.String() != "1" || pdb.Spec.MinAvailable != nil {
			t.Errorf("maxUnavailable = %v, minAvailable = %v, want maxUnavailable 1", pdb.Spec.MaxUnavailable, pdb.Spec.MinAvailable)
		}
		if p := pdb.Spec.UnhealthyPodEvictionPolicy; p == nil || *p != policyv1.AlwaysAllow {
			t.Errorf("unhealthyPodEvictionPolicy = %s: an output outage (both replicas unready) would block every drain", show(p))
		}
	})

	t.Run("probes /healthz and /readyz on the metrics port", func(t *testing.T) {
		for _, p := range []struct {
			name  string
			probe *corev1.Probe
			path  string
		}{{"liveness", c.LivenessProbe, "/healthz"}, {"readiness", c.ReadinessProbe, "/readyz"}} {
			if p.probe == nil || p.probe.HTTPGet == nil {
				t.Errorf("no %s httpGet probe", p.name)
				continue
			}
			if p.probe.HTTPGet.Path != p.path {
				t.Errorf("%s probe path = %s, want %s", p.name, p.probe.HTTPGet.Path, p.path)
			}
			if got := resolvePort(c, p.probe.HTTPGet.Port.String()); got != metricsPort {
				t.Errorf("%s probe port = %d, want %d", p.name, got, metricsPort)
			}
		}
		host, port, err := net.SplitHostPort(r.config.Metrics.Listen)
		if err != nil || port != strconv.Itoa(metricsPort) {
			t.Fatalf("metrics.listen %q, want port %d", r.config.Metrics.Listen, metricsPort)
		}
		if ip := net.ParseIP(host); ip == nil || ip.IsLoopback() {
			t.Errorf("metrics.listen %q: the kubelet probes the pod IP, so listen on 0.0.0.0", r.config.Metrics.Listen)
		}
	})

	t.Run("gives the agent time to flush on SIGTERM", func(t *testing.T) {
		if pod.TerminationGracePeriodSeconds == nil {
			t.Fatal("terminationGracePeriodSeconds not set")
		}
		if grace := time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second; grace <= r.config.ShutdownTimeout {
			t.Errorf("terminationGracePeriodSeconds %s is not longer than shutdown_timeout %s", grace, r.config.ShutdownTimeout)
		}
	})

	t.Run("reads its config from the ConfigMap", func(t *testing.T) {
		v := podVolume(t, &pod, "config")
		if v.ConfigMap == nil || v.ConfigMap.Name != r.configMap.Name {
			t.Fatalf("config volume = %+v, want ConfigMap %s", v.VolumeSource, r.configMap.Name)
		}
		if m := mount(t, c, "config"); path.Join(m.MountPath, "config.yaml") != configPath || !m.ReadOnly {
			t.Errorf("config.yaml lands at %s (read-only %v), want %s read-only", path.Join(m.MountPath, "config.yaml"), m.ReadOnly, configPath)
		}
		if i := slices.Index(c.Args, "--config"); i < 0 || i+1 >= len(c.Args) || c.Args[i+1] != configPath {
			t.Errorf("args %q do not name --config %s", c.Args, configPath)
		}
		if len(c.Command) != 0 {
			t.Errorf("command %q overrides the image's entrypoint", c.Command)
		}
	})

	t.Run("never gets a service account token", func(t *testing.T) {
		if b := r.serviceAcct.AutomountServiceAccountToken; b == nil || *b {
			t.Errorf("ServiceAccount automountServiceAccountToken is not false")
		}
		if b := pod.AutomountServiceAccountToken; b == nil || *b {
			t.Errorf("pod automountServiceAccountToken is not false")
		}
		if pod.ServiceAccountName != r.serviceAcct.Name {
			t.Errorf("serviceAccountName = %q, want %q", pod.ServiceAccountName, r.serviceAcct.Name)
		}
	})

	t.Run("sets resource requests and limits", func(t *testing.T) {
		for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			req, okReq := c.Resources.Requests[name]
			lim, okLim := c.Resources.Limits[name]
			if !okReq || !okLim || req.Cmp(lim) > 0 {
				t.Errorf("%s: request %s (set %v), limit %s (set %v)", name, req.String(), okReq, lim.String(), okLim)
			}
		}
		// A request body is held whole until it is spooled: a few of them
		// fit in the limit beside the agent's working set.
		if lim := c.Resources.Limits[corev1.ResourceMemory]; lim.Value() < 64<<20+4*int64(in.MaxBodyBytes) {
			t.Errorf("memory limit %s does not hold four %d-byte bodies beside the agent", lim.String(), in.MaxBodyBytes)
		}
	})

	t.Run("ships the placeholder image, in the audittail namespace", func(t *testing.T) {
		if c.Image != "ghcr.io/audittail/audittail:latest" {
			t.Errorf("image = %s (docs/deployment.md documents the placeholder; change both)", c.Image)
		}
		for _, ns := range []string{sts.Namespace, r.service.Namespace, r.policy.Namespace, r.pdb.Namespace, r.configMap.Namespace} {
			if ns != r.namespace.Name {
				t.Errorf("an object is in namespace %q, not %q", ns, r.namespace.Name)
			}
		}
	})
}

// checkMode checks that a Secret volume's files are readable by the pod's
// fsGroup (a non-root uid does not own them: the kubelet writes them as
// root) and by no one else.
func checkMode(t *testing.T, v *corev1.Volume) {
	t.Helper()
	m := v.Secret.DefaultMode
	if m == nil {
		t.Errorf("volume %s: no defaultMode, want 0440", v.Name)
	} else if *m&0o007 != 0 || *m&0o040 == 0 {
		t.Errorf("volume %s: defaultMode %#o, want group-readable and nothing for others (0440)", v.Name, *m)
	}
}

// show prints what a pointer points to, or "unset".
func show[T any](p *T) string {
	if p == nil {
		return "unset"
	}
	return fmt.Sprint(*p)
}
