package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func validate(t *testing.T, config string, extra ...string) (string, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	err := run(context.Background(), append([]string{"validate", "--config", path}, extra...), &out, &errb)
	return out.String() + errb.String(), err
}

func TestValidateNamesTheOptionThatIsWrong(t *testing.T) {
	base := "state_dir: /tmp/audittail-validate\ninputs:\n  - path: /var/log/kubernetes/audit/audit.log\n"
	cases := []struct {
		name, config string
		want         []string
	}{
		{"an unknown key, with its line", base + "outputs:\n  - type: null\nbatch:\n  max_event: 5\n", []string{`line 7`, `unknown key "batch.max_event"`}},
		{"an unknown key of an output type", base + "outputs:\n  - type: file\n    path: /tmp/x\n    max_size: 5\n", []string{`line 7`, `unknown key "max_size"`, "max_size_mb"}},
		{"an unknown key under tls", base + "outputs:\n  - type: fluentd\n    address: tls://h:1\n    tls: {ca: /x}\n", []string{`unknown key "tls.ca"`}},
		{"a bad start_at", "inputs:\n  - path: /a/audit.log\n    start_at: middle\noutputs:\n  - type: null\n", []string{"start_at", `"middle"`, "beginning or end"}},
		{"a bad on_parse_error", base + "outputs:\n  - type: null\n    on_parse_error: keep\n", []string{"outputs[0]", "on_parse_error", "forward or drop"}},
		{"a bad syslog framing", base + "outputs:\n  - type: syslog\n    address: tcp://127.0.0.1:6514\n    framing: x\n", []string{"outputs[0] (syslog", "framing", `"x"`}},
		{"a bad fluentd compress", base + "outputs:\n  - type: fluentd\n    address: 127.0.0.1:24224\n    compress: zstd\n", []string{"outputs[0] (fluentd", "compress"}},
		{"an unknown output type", base + "outputs:\n  - type: kinesis\n", []string{`unknown output type "kinesis"`}},
		{"a missing input path", "inputs:\n  - start_at: end\noutputs:\n  - type: null\n", []string{"inputs[0].path", "required"}},
		{"no outputs", base, []string{"outputs", "at least one"}},
		{"a missing logdna url", base + "outputs:\n  - type: logdna\n    ingestion_key_env: HOME\n", []string{"outputs[0] (logdna", "url"}},
		{"a missing fluentd address", base + "outputs:\n  - type: fluentd\n", []string{"outputs[0] (fluentd", "address"}},
		{"an unreadable key file", base + "outputs:\n  - type: logdna\n    url: https://logs.example.com/logs/ingest\n    ingestion_key_file: /nonexistent/key\n", []string{"ingestion_key_file", "/nonexistent/key"}},
		{"an unreadable shared key file", base + "outputs:\n  - type: fluentd\n    address: 127.0.0.1:24224\n    shared_key_file: /nonexistent/shared\n", []string{"shared_key_file", "/nonexistent/shared"}},
		{"an unset environment variable", base + "outputs:\n  - type: file\n    path: ${AUDITTAIL_TEST_UNSET}/x\n", []string{"AUDITTAIL_TEST_UNSET", "not set"}},
		{"a duplicate output name", base + "outputs:\n  - type: null\n  - type: null\n", []string{"outputs[1].name", "twice"}},
		{"an unknown input type", "inputs:\n  - type: socket\noutputs:\n  - type: null\n", []string{"inputs[0].type", `"socket"`, "file or webhook"}},
		{"a webhook key on a file input", base + "    listen: 0.0.0.0:8443\noutputs:\n  - type: null\n", []string{"inputs[0].listen", "type: webhook"}},
		{"a webhook without tls", "inputs:\n  - type: webhook\n    listen: :8443\n    spool: {dir: /var/lib/audittail/spool}\noutputs:\n  - type: null\n", []string{"inputs[0].tls", "cert_file", "insecure: true"}},
		{"a webhook without a spool", "inputs:\n  - type: webhook\n    listen: :8443\n    insecure: true\noutputs:\n  - type: null\n", []string{"inputs[0].spool.dir", "required"}},
		{"a webhook with start_at", "inputs:\n  - type: webhook\n    listen: :8443\n    insecure: true\n    start_at: end\n    spool: {dir: /s}\noutputs:\n  - type: null\n", []string{"inputs[0].start_at", "only a file input"}},
		{"a webhook listen without a port", "inputs:\n  - type: webhook\n    listen: localhost\n    insecure: true\n    spool: {dir: /s}\noutputs:\n  - type: null\n", []string{"inputs[0].listen", "host:port"}},
		{"a webhook spool smaller than four bodies", "inputs:\n  - type: webhook\n    listen: :8443\n    insecure: true\n    spool: {dir: /s, max_bytes: 8MiB}\noutputs:\n  - type: null\n", []string{"inputs[0].spool.max_bytes", "4 requests"}},
		{"an unknown key under a webhook's tls", "inputs:\n  - type: webhook\n    listen: :8443\n    tls: {cert: /x}\n    spool: {dir: /s}\noutputs:\n  - type: null\n", []string{`line 4`, `unknown key "inputs[].tls.cert"`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, err := validate(t, c.config)
			if err == nil {
				t.Fatalf("validate accepted it:\n%s", out)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// TestValidateAcceptsEveryExampleConfig runs validate on examples/config/*
// and the webhook example, with the secret and CA files they name provided
// in a temporary directory.
func TestValidateAcceptsEveryExampleConfig(t *testing.T) {
	files, _ := filepath.Glob("../../examples/config/*.yaml")
	if len(files) < 4 {
		t.Fatalf("expected the example configs, found %v", files)
	}
	files = append(files, "../../examples/webhook/config.yaml")
	fileKey := regexp.MustCompile(`([a-z_]+_file):\s*([^\s,}]+)`)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			certPEM, keyPEM := testKeyPair(t)
			cfg := fileKey.ReplaceAllStringFunc(string(data), func(m string) string {
				sub := fileKey.FindStringSubmatch(m)
				local := filepath.Join(dir, filepath.Base(sub[2]))
				content := "test-secret\n"
				switch {
				case strings.Contains(sub[1], "ca_file") || strings.Contains(sub[1], "cert_file"):
					content = certPEM
				case strings.Contains(sub[1], "key_file") && !strings.Contains(sub[1], "ingestion"):
					content = keyPEM
				}
				os.WriteFile(local, []byte(content), 0o600)
				return sub[1] + ": " + local
			})
			// Files named elsewhere (headers_files values) hold a secret.
			cfg = regexp.MustCompile(`/etc/audittail/[^\s,}]+`).ReplaceAllStringFunc(cfg, func(path string) string {
				local := filepath.Join(dir, filepath.Base(path))
				os.WriteFile(local, []byte("Bearer test-secret\n"), 0o600)
				return local
			})
			cfg = strings.ReplaceAll(cfg, "/var/lib/audittail", dir)
			out, err := validate(t, cfg)
			if err != nil {
				t.Fatalf("%s: %v\n%s", f, err, out)
			}
			if !strings.Contains(out, "is valid") {
				t.Fatalf("no confirmation:\n%s", out)
			}
		})
	}
}

func TestEveryCommandExplainsEachFlagOnOneLine(t *testing.T) {
	for _, cmd := range []string{"run", "gen", "validate", "backfill"} {
		var out, errb bytes.Buffer
		err := run(context.Background(), []string{cmd, "--help"}, &out, &errb)
		if !errors.Is(err, flag.ErrHelp) {
			t.Fatalf("%s --help: %v", cmd, err)
		}
		help := errb.String()
		lines := strings.Split(strings.TrimSpace(help), "\n")
		if !strings.HasPrefix(lines[0], "Usage: audittail "+cmd) {
			t.Fatalf("%s --help starts with %q", cmd, lines[0])
		}
		flags := 0
		for _, l := range lines[1:] {
			if strings.HasPrefix(l, "  --") {
				flags++
				if len(strings.Fields(l)) < 3 {
					t.Errorf("%s: flag line without an explanation: %q", cmd, l)
				}
			}
		}
		if flags == 0 {
			t.Fatalf("%s --help lists no flags:\n%s", cmd, help)
		}
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"--help"}, &out, &out); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"run", "backfill", "validate", "gen --path", "gen --webhook", "version"} {
		if !strings.Contains(out.String(), "audittail "+cmd) {
			t.Errorf("audittail --help does not mention %s:\n%s", cmd, out.String())
		}
	}
}

func TestValidateAcceptsTheDesignCardExample(t *testing.T) {
	data, err := os.ReadFile("testdata/design-example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(t.TempDir(), "ingestion-key")
	os.WriteFile(key, []byte("k\n"), 0o600)
	out, err := validate(t, strings.ReplaceAll(string(data), "/etc/audittail/ingestion-key", key))
	if err != nil {
		t.Fatalf("the design card's example is rejected: %v\n%s", err, out)
	}
	if _, err := validate(t, strings.ReplaceAll(string(data), "filters: {}", "filters: {verbs: [get]}")); err == nil || !strings.Contains(err.Error(), "filters") {
		t.Fatalf("non-empty filters: %v", err)
	}
}

func TestValidateReadsAWebhookInputsCertificatesAndTokenAndSaysHowItListens(t *testing.T) {
	dir := t.TempDir()
	certPEM, keyPEM := testKeyPair(t)
	files := map[string]string{"tls.crt": certPEM, "tls.key": keyPEM, "ca.crt": certPEM, "token": "t0ken\n", "empty": "\n"}
	for name, data := range files {
		os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600)
	}
	config := func(tls, auth string) string {
		return "state_dir: " + dir + "/state\ninputs:\n  - type: webhook\n    listen: 127.0.0.1:8443\n    path: /audit/webhook/event\n" +
			"    tls: " + tls + "\n    auth: " + auth + "\n    spool: {dir: " + dir + "/spool}\noutputs:\n  - type: null\n"
	}
	f := func(name string) string { return filepath.Join(dir, name) }
	out, err := validate(t, config("{cert_file: "+f("tls.crt")+", key_file: "+f("tls.key")+", client_ca_file: "+f("ca.crt")+"}", "{bearer_token_file: "+f("token")+"}"))
	if err != nil || !strings.Contains(out, "https, auth: bearer token and client certificate") || !strings.Contains(out, "is valid") {
		t.Fatalf("a good webhook input: %v\n%s", err, out)
	}
	for _, c := range []struct{ name, tls, auth, says string }{
		{"a key that is not one", "{cert_file: " + f("tls.crt") + ", key_file: " + f("token") + "}", "{}", "tls: "},
		{"a client CA that holds no certificate", "{cert_file: " + f("tls.crt") + ", key_file: " + f("tls.key") + ", client_ca_file: " + f("token") + "}", "{}", "holds no PEM certificate"},
		{"an empty token file", "{cert_file: " + f("tls.crt") + ", key_file: " + f("tls.key") + "}", "{bearer_token_file: " + f("empty") + "}", "is empty"},
		{"a missing token file", "{cert_file: " + f("tls.crt") + ", key_file: " + f("tls.key") + "}", "{bearer_token_file: " + f("nope") + "}", "no such file"},
	} {
		out, err := validate(t, config(c.tls, c.auth))
		if err == nil || !strings.Contains(err.Error(), c.says) || !strings.Contains(err.Error(), "inputs[0] (webhook webhook:") {
			t.Errorf("%s: %v\n%s", c.name, err, out)
		}
	}
}
