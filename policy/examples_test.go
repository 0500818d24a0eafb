package policy

import (
	"path/filepath"
	"testing"
)

// examplePolicies returns every policy in examples/audit-policy.
func examplePolicies(t testing.TB) []string {
	files, err := filepath.Glob(filepath.Join("..", "examples", "audit-policy", "*.yaml"))
	if err != nil || len(files) < 6 {
		t.Fatalf("example policies: %v %v", files, err)
	}
	return files
}

func TestExamplePoliciesLoad(t *testing.T) {
	for _, f := range examplePolicies(t) {
		if _, err := Load(f); err != nil {
			t.Error(err)
		}
	}
}

func TestExamplePolicies(t *testing.T) {
	admin := req{user: "kubernetes-admin", groups: []string{"system:masters", "system:authenticated"}}
	for _, c := range []struct {
		name  string
		file  string
		req   req
		level Level
		omit  bool
	}{
		{"siem: secrets are None", "siem.yaml", admin.do("get", "", "secrets", "default"), None, false},
		{"siem: configmaps are None", "siem.yaml", admin.do("update", "", "configmaps", "default"), None, false},
		{"siem: pods are Metadata", "siem.yaml", admin.do("create", "", "pods", "default"), Metadata, false},
		{"siem: non-resource requests are Metadata", "siem.yaml", admin.get("/healthz"), Metadata, false},
		{"siem: no RequestReceived", "siem.yaml", func() req { r := admin.do("create", "", "pods", "x"); r.stage = "RequestReceived"; return r }(), Metadata, true},
		{"k3s: deployment creations at Metadata", "k3s-deployment-creations.yaml", admin.do("create", "apps", "deployments", "default"), Metadata, false},
		{"k3s: nothing else", "k3s-deployment-creations.yaml", admin.do("update", "apps", "deployments", "default"), None, false},
		{"gce: secrets at Metadata", "gce-kube-up.yaml", admin.do("create", "", "secrets", "default"), Metadata, false},
		{"gce: reads of known APIs at Request", "gce-kube-up.yaml", admin.do("list", "apps", "deployments", ""), Request, false},
		{"gce: writes to known APIs at RequestResponse", "gce-kube-up.yaml", admin.do("patch", "apps", "deployments", "x"), RequestResponse, false},
		{"gce: other APIs at Metadata", "gce-kube-up.yaml", admin.do("patch", "example.com", "widgets", "x"), Metadata, false},
		{"gce: node status updates at Request", "gce-kube-up.yaml", kubelet.do("patch", "", "nodes/status", ""), Request, false},
		{"gce: health checks are None", "gce-kube-up.yaml", admin.get("/healthz/etcd"), None, false},
		{"kublr-like: token reviews at Metadata", "kublr-like.yaml", admin.do("create", "authentication.k8s.io", "tokenreviews", ""), Metadata, false},
		{"kublr-like: writes at RequestResponse", "kublr-like.yaml", admin.do("create", "", "pods", "x"), RequestResponse, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, err := Load(filepath.Join("..", "examples", "audit-policy", c.file))
			if err != nil {
				t.Fatal(err)
			}
			d := decide(t, p, c.req.line())
			if d.Level != c.level || d.Omit != c.omit {
				t.Errorf("%+v, want level %s omit %v", d, c.level, c.omit)
			}
		})
	}
}
