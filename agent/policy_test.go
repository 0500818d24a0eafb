package agent

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/audittail/audittail/outputs"
	"github.com/audittail/audittail/outputs/file"
)

func TestAPolicyAndRedactionApplyToTheirOutputOnlyAndTheRestGetsEveryEventWhole(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.Outputs = []outputs.Config{
			{Name: "archive", Type: "file"},
			{Name: "siem", Type: "file", PolicyFile: "../examples/audit-policy/siem.yaml"},
			{Name: "masked", Type: "file", Redact: []string{"secrets"}},
		}
	})
	log := h.log()
	path := func(n string) string { return filepath.Join(h.dir, "out", n+".jsonl") }
	a, err := New(h.cfg, log, func(c outputs.Config) (outputs.Output, error) {
		return file.New(file.Options{Path: path(c.Name)}, log)
	}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	h.run(a)
	lines := []string{
		// A Secret created with its data in the body (RequestResponse).
		`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"secret-1","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/secrets","verb":"create","user":{"username":"admin"},"objectRef":{"resource":"secrets","namespace":"default","name":"db","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":201},"requestObject":{"kind":"Secret","apiVersion":"v1","metadata":{"name":"db"},"data":{"password":"aHVudGVyMg=="},"stringData":{"user":"root"}},"responseObject":{"kind":"Secret","apiVersion":"v1","metadata":{"name":"db"},"data":{"password":"aHVudGVyMg=="}},"stageTimestamp":"2026-12-03T10:00:00.000000Z"}`,
		// A pod create with bodies: the SIEM gets Metadata.
		`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"pod-1","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/pods","verb":"create","user":{"username":"admin"},"objectRef":{"resource":"pods","namespace":"default","name":"web","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":201},"requestObject":{"kind":"Pod","spec":{}},"responseObject":{"kind":"Pod","spec":{}},"stageTimestamp":"2026-12-03T10:00:01.000000Z"}`,
		// RequestReceived: omitted for the SIEM.
		`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"pod-2","stage":"RequestReceived","requestURI":"/api/v1/pods","verb":"list","user":{"username":"admin"},"objectRef":{"resource":"pods","apiVersion":"v1"},"stageTimestamp":"2026-12-03T10:00:02.000000Z"}`,
	}
	appendLines(t, h.input, lines)
	archive := waitLines(t, path("archive"), 3, h.logBuf)
	assertLines(t, archive, lines)
	masked := waitLines(t, path("masked"), 3, h.logBuf)
	siem := waitLines(t, path("siem"), 1, h.logBuf)
	h.stop()

	// The SIEM: only the pod create, cut to Metadata, saying so.
	if len(siem) != 1 {
		t.Fatalf("siem got %d events, want only the pod create: %v", len(siem), siem)
	}
	var ev map[string]any
	if err := json.Unmarshal([]byte(siem[0]), &ev); err != nil {
		t.Fatal(err)
	}
	if ev["auditID"] != "pod-1" || ev["level"] != "Metadata" || ev["requestObject"] != nil || ev["responseObject"] != nil {
		t.Fatalf("siem event: %s", siem[0])
	}
	if ann, _ := ev["annotations"].(map[string]any); ann["audittail.io/policy"] != "siem" {
		t.Fatalf("no policy annotation: %s", siem[0])
	}
	// Masked: the Secret's values, nothing else.
	if masked[1] != lines[1] || masked[2] != lines[2] {
		t.Fatalf("redaction changed events without secrets")
	}
	var sec struct {
		RequestObject struct {
			Data, StringData map[string]string
		}
		ResponseObject struct{ Data map[string]string }
	}
	if err := json.Unmarshal([]byte(masked[0]), &sec); err != nil {
		t.Fatal(err)
	}
	if sec.RequestObject.Data["password"] != "REDACTED" || sec.RequestObject.StringData["user"] != "REDACTED" || sec.ResponseObject.Data["password"] != "REDACTED" {
		t.Fatalf("not masked: %s", masked[0])
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(a.Collector())
	if got := metricValue(t, reg, "audittail_events_filtered_total", map[string]string{"output": "siem", "rule_index": "0", "action": "drop"}); got != 1 {
		t.Fatalf("siem drops by rule 0 (secrets): %v", got)
	}
	if got := metricValue(t, reg, "audittail_filtered_bytes_saved_total", map[string]string{"output": "siem"}); got <= float64(len(lines[0])) {
		t.Fatalf("bytes saved: %v", got)
	}
}

func TestABadPolicyFileStopsTheStartNamingTheOutputAndTheRule(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n  - level: Loud\n"), 0o600)
	h := newHarness(t, func(c *Config) {
		c.Outputs = []outputs.Config{{Name: "siem", Type: "file", PolicyFile: bad}}
	})
	_, err := New(h.cfg, h.log(), func(c outputs.Config) (outputs.Output, error) {
		return file.New(file.Options{Path: filepath.Join(h.dir, "out.jsonl")}, h.log())
	}, Options{})
	if err == nil {
		t.Fatal("a policy with level Loud was accepted")
	}
	t.Log(err)
	for _, want := range []string{`outputs[0] (file "siem")`, "policy_file", "rules[0]"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q does not say %q", err, want)
		}
	}
}

func TestAddAnnotationsMarkEveryEventOfTheInputForEveryOutput(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.AddAnnotations = map[string]string{"audittail.io/cluster": "global", "audittail.io/region": "eu"}
		c.Inputs[0].AddAnnotations = map[string]string{"audittail.io/cluster": "prod-eu-1"}
	})
	h.start(Options{})
	appendLines(t, h.input, append(events(0, 50), "not json"))
	got := h.waitDelivered(51)
	h.stop()
	for i, line := range got[:50] {
		var ev struct {
			AuditID     string
			Annotations map[string]string
		}
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("line %d: %v: %s", i, err, line)
		}
		if ev.AuditID != fmt.Sprintf("id-%06d", i) || ev.Annotations["audittail.io/cluster"] != "prod-eu-1" || ev.Annotations["audittail.io/region"] != "eu" {
			t.Fatalf("line %d: %s", i, line)
		}
	}
	if got[50] != "not json" {
		t.Fatalf("an invalid line was changed: %q", got[50])
	}
}
