package syslog

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/audittail/audittail/agent"
	"github.com/audittail/audittail/outputs"
	"github.com/audittail/audittail/parser"
	"github.com/audittail/audittail/parser/auditgen"
)

// These tests run Debian's rsyslogd as a plain process (no system config,
// its own work directory) and ship events to it through the agent. `make
// test` installs rsyslog and rsyslog-gnutls (scripts/install-test-deps.sh);
// a missing rsyslogd is a failure, not a skip.

// rsyslogTemplate writes one line per message: the fields a test checks,
// tab-separated, the MSG last (rsyslog keeps its BOM).
const rsyslogTemplate = `%hostname%\t%app-name%\t%syslogfacility%\t%syslogseverity%\t%msgid%\t%structured-data%\t%msg%\n`

type rsyslogd struct {
	addr string // host:port of the imtcp listener
	out  string // the file the messages go to
	log  *syncBuffer
}

// rsyslogConf says how rsyslogd listens.
type rsyslogConf struct {
	tls *pki // imtcp over TLS (rsyslog-gnutls) with this PKI's server certificate
	udp bool // imudp, with rsyslog's default maxMessageSize
}

// startRsyslog starts rsyslogd listening on a free port of 127.0.0.1: imtcp
// (maxMessageSize 256k), over TLS with rc.tls, or imudp.
func startRsyslog(t *testing.T, rc rsyslogConf) *rsyslogd {
	t.Helper()
	bin, err := exec.LookPath("rsyslogd")
	if err != nil {
		t.Fatalf("rsyslogd is not installed (make test installs Debian's rsyslog and rsyslog-gnutls with scripts/install-test-deps.sh): %v", err)
	}
	dir := t.TempDir()
	r := &rsyslogd{out: filepath.Join(dir, "messages.log"), log: &syncBuffer{}}
	port := freePort(t)
	r.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))

	var conf strings.Builder
	fmt.Fprintf(&conf, "# written by %s\n", t.Name())
	p := rc.tls
	if rc.udp {
		fmt.Fprintf(&conf, "global(workDirectory=%q", dir)
	} else {
		// maxMessageSize must come before the modules are loaded.
		fmt.Fprintf(&conf, "global(workDirectory=%q maxMessageSize=\"256k\"", dir)
	}
	if p != nil {
		fmt.Fprintf(&conf, "\n  defaultNetstreamDriver=\"gtls\"\n  defaultNetstreamDriverCAFile=%q\n  defaultNetstreamDriverCertFile=%q\n  defaultNetstreamDriverKeyFile=%q", p.caFile, p.certFile, p.keyFile)
	}
	conf.WriteString(")\n")
	switch {
	case rc.udp:
		conf.WriteString(`module(load="imudp")` + "\n")
	case p != nil:
		conf.WriteString(`module(load="imtcp" streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")` + "\n")
	default:
		conf.WriteString(`module(load="imtcp")` + "\n")
	}
	fmt.Fprintf(&conf, "template(name=\"audit\" type=\"string\" string=\"%s\")\n", rsyslogTemplate)
	fmt.Fprintf(&conf, "ruleset(name=\"audit\") {\n  action(type=\"omfile\" file=%q template=\"audit\")\n}\n", r.out)
	input := "imtcp"
	if rc.udp {
		input = "imudp"
	}
	fmt.Fprintf(&conf, "input(type=%q address=\"127.0.0.1\" port=\"%d\" ruleset=\"audit\")\n", input, port)
	confFile := filepath.Join(dir, "rsyslog.conf")
	if err := os.WriteFile(confFile, []byte(conf.String()), 0o644); err != nil {
		t.Fatal(err)
	}

	if out, err := exec.Command(bin, "-N1", "-f", confFile).CombinedOutput(); err != nil {
		t.Fatalf("rsyslogd rejects its configuration: %v\n%s\nconfig:\n%s", err, out, conf.String())
	}
	cmd := exec.Command(bin, "-n", "-f", confFile, "-i", filepath.Join(dir, "rsyslogd.pid"))
	cmd.Stdout, cmd.Stderr = r.log, r.log
	if err := cmd.Start(); err != nil {
		t.Fatalf("cannot start rsyslogd: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	if rc.udp {
		// A UDP listener cannot be probed without sending it a message:
		// give rsyslogd time to open it, and fail if it exited.
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("rsyslogd exited (%v); its output:\n%s\nconfig:\n%s", err, r.log.String(), conf.String())
		case <-time.After(500 * time.Millisecond):
		}
		return r
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", r.addr, time.Second)
		if err == nil {
			c.Close()
			return r
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("rsyslogd exited (%v) before it listened on %s; its output:\n%s\nconfig:\n%s", err, r.addr, r.log.String(), conf.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("rsyslogd does not listen on %s after 10s; its output:\n%s", r.addr, r.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// wait waits until rsyslogd wrote n messages and returns them.
func (r *rsyslogd) wait(t *testing.T, n int) [][]byte {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		data, err := os.ReadFile(r.out)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		lines := bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n"))
		if len(data) == 0 {
			lines = nil
		}
		if len(lines) >= n {
			time.Sleep(200 * time.Millisecond) // would more come?
			data, _ = os.ReadFile(r.out)
			return bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n"))
		}
		if time.Now().After(deadline) {
			t.Fatalf("rsyslogd wrote %d messages, want %d; its output:\n%s", len(lines), n, r.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// writeAuditLog writes n realistic events (mixed levels) to a new audit log
// and returns its path and lines.
func writeAuditLog(t *testing.T, seed uint64, n int) (string, [][]byte) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.log")
	g := auditgen.New(seed)
	var data []byte
	lines := make([][]byte, 0, n)
	ts := time.Date(2026, 11, 23, 10, 54, 44, 671393000, time.UTC)
	for i := range n {
		start := len(data)
		data = g.AppendMixed(data, ts.Add(time.Duration(i)*time.Millisecond))
		lines = append(lines, data[start:len(data)-1:len(data)-1])
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path, lines
}

// runAgent ships the audit log at input through the agent to one syslog
// output configured by outputYAML (indented keys), until the end of the
// file, and returns the output.
func runAgent(t *testing.T, input, outputYAML string) (*Output, agent.Summary) {
	t.Helper()
	src := fmt.Sprintf(`state_dir: %s
inputs:
  - path: %s
    start_at: beginning
batch: {max_events: 500, max_wait: 50ms}
outputs:
  - name: siem
    type: syslog
%s`, t.TempDir(), input, outputYAML)
	cfg, err := agent.ParseConfig([]byte(src))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, src)
	}
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var out *Output
	a, err := agent.New(cfg, log, func(c outputs.Config) (outputs.Output, error) {
		o, err := FromConfig(c, log)
		out = o
		return o, err
	}, agent.Options{StopAtEOF: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := a.Run(ctx); err != nil {
		t.Fatalf("agent: %v\n%s", err, logs.String())
	}
	s := a.Summaries()[0]
	if s.Sent.Failed != 0 || s.Sent.DeadLettered != 0 {
		t.Logf("agent log:\n%s", logs.String())
	}
	return out, s
}

// checkRsyslogMessage checks one line rsyslogd wrote against the event line
// that was sent, and returns the MSG without its BOM.
func checkRsyslogMessage(t *testing.T, i int, got, line []byte) []byte {
	t.Helper()
	f := bytes.SplitN(got, []byte("\t"), 7)
	if len(f) != 7 {
		t.Fatalf("message %d: rsyslogd wrote %q", i, got)
	}
	var ev parser.Event
	if err := parser.Scan(line, &ev); err != nil {
		t.Fatal(err)
	}
	id, _ := parser.Unquote(nil, ev.AuditID)
	sev := strconv.Itoa(severity(ev.ResponseCode))
	switch {
	case string(f[0]) != "cp-rsyslog" || string(f[1]) != "kube-apiserver" || string(f[2]) != "10" || string(f[3]) != sev || string(f[4]) != "audit":
		t.Fatalf("message %d: header fields %q, want cp-rsyslog kube-apiserver 10 %s audit", i, f[:5], sev)
	case !bytes.HasPrefix(f[5], []byte(`[audit@32473 auditID="`+string(id)+`" `)):
		t.Fatalf("message %d: structured data %s, want auditID %s first", i, f[5], id)
	case !bytes.HasPrefix(f[6], bom):
		t.Fatalf("message %d: MSG does not start with the BOM: %.40q", i, f[6])
	}
	return f[6][len(bom):]
}

func TestRsyslogReceivesEveryEventOverTCP(t *testing.T) {
	r := startRsyslog(t, rsyslogConf{})
	const n = 20000
	input, lines := writeAuditLog(t, 42, n)
	// The test's rsyslogd takes 256k messages; say so, to get every event whole.
	out, sum := runAgent(t, input, fmt.Sprintf("    address: tcp://%s\n    hostname: cp-rsyslog\n    max_message_bytes: 256KiB\n", r.addr))
	if sum.Sent.Events != n || sum.Sent.Failed != 0 || sum.Sent.DeadLettered != 0 {
		t.Fatalf("agent sent %+v, want %d events and no failure", sum.Sent, n)
	}
	got := r.wait(t, n)
	if len(got) != n {
		t.Fatalf("rsyslogd wrote %d messages, want exactly %d", len(got), n)
	}
	for i := range got {
		if body := checkRsyslogMessage(t, i, got[i], lines[i]); !bytes.Equal(body, lines[i]) {
			t.Fatalf("message %d: body differs from the event line\n got %.200s\nwant %.200s", i, body, lines[i])
		}
	}
	if out.Truncated() != 0 {
		t.Fatalf("%d events truncated, want none under 256KiB", out.Truncated())
	}
}

func TestRsyslogReceivesEveryEventOverTLS(t *testing.T) {
	p := testPKI(t)
	r := startRsyslog(t, rsyslogConf{tls: p})
	const n = 3000
	input, lines := writeAuditLog(t, 43, n)
	// 4KiB: the larger Request and RequestResponse events lose their
	// objects on the way.
	out, sum := runAgent(t, input, fmt.Sprintf("    address: tls://%s\n    hostname: cp-rsyslog\n    tls: {ca_file: %s}\n    max_message_bytes: 4KiB\n", r.addr, p.caFile))
	if sum.Sent.Events != n || sum.Sent.Failed != 0 || sum.Sent.DeadLettered != 0 {
		t.Fatalf("agent sent %+v, want %d events and no failure", sum.Sent, n)
	}
	got := r.wait(t, n)
	if len(got) != n {
		t.Fatalf("rsyslogd wrote %d messages, want exactly %d", len(got), n)
	}
	cut := 0
	for i := range got {
		body := checkRsyslogMessage(t, i, got[i], lines[i])
		if bytes.Equal(body, lines[i]) {
			continue
		}
		var ev parser.Event
		if err := parser.Scan(lines[i], &ev); err != nil {
			t.Fatal(err)
		}
		// The responseObject goes first; the requestObject too when the
		// event still does not fit. The annotation says which.
		var got struct {
			Annotations map[string]string `json:"annotations"`
		}
		json.Unmarshal(body, &got)
		what := got.Annotations["audittail.io/truncated"]
		switch {
		case ev.ResponseObject.Present() && !strings.Contains(what, "responseObject"):
			t.Fatalf("event %d: requestObject cut before responseObject: %q", i, what)
		case what == "requestObject,responseObject" && len(lines[i])-(ev.ResponseObject.End-ev.ResponseObject.Key) <= 4096-400:
			t.Fatalf("event %d: requestObject cut although the event fit without responseObject", i)
		}
		checkCut(t, lines[i], body, what)
		cut++
	}
	if cut == 0 || int64(cut) != out.Truncated() {
		t.Fatalf("%d bodies were cut, Truncated() = %d; want the same, more than 0", cut, out.Truncated())
	}
	t.Logf("%d of %d events sent without their objects", cut, n)
}

func TestRsyslogWithItsDefaultMaxMessageSizeTakesTheUDPDefault(t *testing.T) {
	// rsyslog's default maxMessageSize is 8096 bytes (it says "8k"): a
	// longer datagram is cut, and its JSON broken. The udp default of
	// max_message_bytes keeps every message under it.
	r := startRsyslog(t, rsyslogConf{udp: true})
	host, port, _ := net.SplitHostPort(r.addr)
	o, err := New(Options{Address: "udp://" + net.JoinHostPort(host, port), Hostname: "cp-rsyslog"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close(context.Background())
	const n = 200
	_, lines := writeAuditLog(t, 44, n)
	for i := 0; i < n; i += 10 { // small bursts: UDP drops what a full socket buffer cannot take
		b := &outputs.Batch{}
		for _, l := range lines[i : i+10] {
			b.Append(l)
		}
		b.Parse(nil)
		if err := o.Send(context.Background(), b); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	got := r.wait(t, n)
	if len(got) != n {
		t.Fatalf("rsyslogd wrote %d messages, want %d", len(got), n)
	}
	for i := range got {
		body := checkRsyslogMessage(t, i, got[i], lines[i])
		if !bytes.Equal(body, lines[i]) && !bytes.Contains(body, []byte(`"audittail.io/truncated":"`)) {
			t.Fatalf("message %d was cut by rsyslogd: %d bytes, ends %q", i, len(body), body[max(0, len(body)-40):])
		}
	}
	if o.Truncated() == 0 {
		t.Fatal("no event was larger than the udp default; the test proves nothing")
	}
	t.Logf("%d of %d events sent without their objects", o.Truncated(), n)
}
