package examples_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/audittail/audittail/outputs/fluentd"
)

// rsyslogReceivers lists every rsyslog receiver config under examples/,
// with the max_message_bytes it tells audittail to use: each must carry
// messages of that size whole. TestRsyslogReceiversAreTested fails when a
// new one is missing here.
var rsyslogReceivers = []struct {
	file       string
	maxMessage int    // the max_message_bytes the file advertises
	advertised string // how the file says it
	keepsBOM   bool   // the file's template writes MSG with its BOM
	output     string // where the file writes the events
	testOutput string // where the test has them written, under its directory
}{
	{"rsyslog/rsyslog.conf", 256 << 10, "max_message_bytes: 256KiB", false, `"/var/log/kube-audit/audit.jsonl"`, "audit.jsonl"},
	{"receivers/rsyslog.conf", 64 << 10, "max_message_bytes: 64KiB", true, `"/var/log/kube-audit/%HOSTNAME%.log"`, "%HOSTNAME%.log"},
}

func TestRsyslogReceiversAreTested(t *testing.T) {
	var files []string
	err := filepath.Walk(".", func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if fi.Mode().IsRegular() && strings.HasSuffix(p, ".conf") {
			if data, err := os.ReadFile(p); err == nil && bytes.Contains(data, []byte(`load="imtcp"`)) {
				files = append(files, p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no rsyslog receiver config found")
	}
	for _, f := range files {
		found := false
		for _, r := range rsyslogReceivers {
			found = found || r.file == f
		}
		if !found {
			t.Errorf("%s is an rsyslog receiver missing from rsyslogReceivers in receivers_test.go", f)
		}
	}
}

// replaceOnce replaces old, which must occur exactly once in data: when an
// example changes, the test says which of its rewrites no longer applies.
func replaceOnce(t *testing.T, file string, data []byte, old, new string) []byte {
	t.Helper()
	if n := bytes.Count(data, []byte(old)); n != 1 {
		t.Fatalf("%s: %q occurs %d times, want once (update the test's rewrite of the example)", file, old, n)
	}
	return bytes.Replace(data, []byte(old), []byte(new), 1)
}

var certPaths = regexp.MustCompile(`"(/etc/[^"]*/)(ca\.pem|server\.pem|server-key\.pem|server\.crt|server\.key)"`)

// TestRsyslogReceiversCarryTheAdvertisedSize runs Debian's rsyslogd with
// each receiver config as it is, except for its paths, TLS files and port
// (127.0.0.1 and a free port), and sends it over TLS with octet counting
// messages of exactly the max_message_bytes the config advertises,
// interleaved with small ones. Every event must come out whole, one per
// line, in order: rsyslog cuts a message longer than maxMessageSize, and
// imtcp takes a frame longer than its maxFrameSize (default 200000) for
// non-transparent framing, gluing the following events together.
func TestRsyslogReceiversCarryTheAdvertisedSize(t *testing.T) {
	rsyslogd, err := exec.LookPath("rsyslogd")
	if err != nil {
		t.Fatal("rsyslogd not found: run `make deps` (installs Debian's rsyslog and rsyslog-gnutls)")
	}
	for _, r := range rsyslogReceivers {
		t.Run(r.file, func(t *testing.T) {
			data, err := os.ReadFile(r.file)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(data, []byte(r.advertised)) {
				t.Fatalf("%s does not say %q", r.file, r.advertised)
			}
			dir := t.TempDir()
			writeCert(t, dir)
			if len(certPaths.FindAll(data, -1)) != 3 {
				t.Fatalf("%s: want 3 TLS files (CA, certificate, key) under /etc, found %q", r.file, certPaths.FindAll(data, -1))
			}
			data = certPaths.ReplaceAll(data, []byte(`"`+dir+`/$2"`))
			data = replaceOnce(t, r.file, data, `port="6514"`, fmt.Sprintf(`address="127.0.0.1" port="%d"`, freePort(t)))
			data = replaceOnce(t, r.file, data, r.output, strconv.Quote(filepath.Join(dir, r.testOutput)))
			if bytes.Contains(data, []byte(`workDirectory="/var/spool/rsyslog"`)) {
				data = replaceOnce(t, r.file, data, `workDirectory="/var/spool/rsyslog"`, `workDirectory=`+strconv.Quote(dir))
			}
			if bytes.Contains(data, []byte(`"/var/`)) || bytes.Contains(data, []byte(`"/etc/`)) {
				t.Fatalf("%s: a path the test does not rewrite:\n%s", r.file, data)
			}
			conf := filepath.Join(dir, "rsyslog.conf")
			if err := os.WriteFile(conf, data, 0o644); err != nil {
				t.Fatal(err)
			}
			addr := regexp.MustCompile(`address="127.0.0.1" port="(\d+)"`).FindSubmatch(data)
			d := startRsyslogd(t, rsyslogd, conf, dir, "127.0.0.1:"+string(addr[1]))

			// Every third event is small, the others make messages of
			// exactly maxMessage bytes.
			const n = 60
			var events [][]byte
			var stream bytes.Buffer
			for i := range n + 1 {
				size := r.maxMessage
				if i%3 == 0 || i == n {
					size = 1000 + i
				}
				msg, event := syslogMessage(i, size)
				if len(msg) != size {
					t.Fatalf("message %d: %d bytes, want %d", i, len(msg), size)
				}
				events = append(events, event)
				fmt.Fprintf(&stream, "%d %s", len(msg), msg)
			}
			pool := x509.NewCertPool()
			ca, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
			if err != nil || !pool.AppendCertsFromPEM(ca) {
				t.Fatalf("ca.pem: %v", err)
			}
			c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", d.addr, &tls.Config{RootCAs: pool, ServerName: "siem.example.com"})
			if err != nil {
				t.Fatalf("TLS to rsyslogd: %v\n%s", err, d.log.String())
			}
			if _, err := c.Write(stream.Bytes()); err != nil {
				t.Fatalf("writing to rsyslogd: %v\n%s", err, d.log.String())
			}
			c.Close()

			out := filepath.Join(dir, strings.ReplaceAll(r.testOutput, "%HOSTNAME%", "cp-1"))
			got := d.waitFor(t, out, events[n])
			lines := bytes.Split(bytes.TrimSuffix(got, []byte("\n")), []byte("\n"))
			bom := "\xEF\xBB\xBF"
			for i, l := range lines {
				if r.keepsBOM {
					if !bytes.HasPrefix(l, []byte(bom)) {
						t.Errorf("line %d does not start with the BOM: %.60q", i+1, l)
					}
					lines[i] = bytes.TrimPrefix(l, []byte(bom))
				} else if bytes.HasPrefix(l, []byte(bom)) {
					t.Errorf("line %d starts with the BOM, which the template removes", i+1)
				}
			}
			if len(lines) != len(events) {
				t.Errorf("rsyslogd wrote %d lines, want %d (one per event)", len(lines), len(events))
			}
			bad := 0
			for i := range min(len(lines), len(events)) {
				if !bytes.Equal(lines[i], events[i]) {
					if bad++; bad > 3 {
						continue
					}
					t.Errorf("line %d: %d bytes, want event %d whole (%d bytes): starts %.80q, ends %.60q", i+1, len(lines[i]), i, len(events[i]), lines[i], lines[i][max(0, len(lines[i])-60):])
				}
			}
			if bad > 0 {
				t.Errorf("%d of %d lines are not the event sent", bad, min(len(lines), len(events)))
			}
			if t.Failed() {
				t.Logf("rsyslogd said:\n%s", d.log.String())
			}
		})
	}
}

// syslogMessage returns an RFC 5424 message of exactly size bytes, as
// audittail's syslog output writes them, and the audit event in its MSG.
func syslogMessage(i, size int) (msg, event []byte) {
	id := fmt.Sprintf("00000000-0000-4000-8000-%012d", i)
	header := `<85>1 2026-11-23T10:54:44.671393Z cp-1 kube-apiserver - audit [audit@32473 auditID="` + id + `" verb="create"] ` + "\xEF\xBB\xBF"
	head := `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Request","auditID":"` + id + `","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/configmaps","verb":"create","user":{"username":"admin"},"requestObject":{"kind":"ConfigMap","data":{"blob":"`
	tail := `"}},"stageTimestamp":"2026-11-23T10:54:44.671393Z"}`
	pad := size - len(header) - len(head) - len(tail)
	var b bytes.Buffer
	b.WriteString(head)
	for b.Len() < len(head)+pad {
		fmt.Fprintf(&b, "%d-%07d.", i, b.Len()) // every slice of the blob is different
	}
	b.Truncate(len(head) + pad)
	b.WriteString(tail)
	event = b.Bytes()
	return append([]byte(header), event...), event
}

type rsyslogProc struct {
	addr   string
	log    *lockedBuffer
	exited chan error
}

func startRsyslogd(t *testing.T, bin, conf, dir, addr string) *rsyslogProc {
	t.Helper()
	if out, err := exec.Command(bin, "-N1", "-f", conf).CombinedOutput(); err != nil || bytes.Contains(out, []byte("error")) {
		t.Fatalf("rsyslogd -N1: %v\n%s", err, out)
	}
	d := &rsyslogProc{addr: addr, log: &lockedBuffer{}, exited: make(chan error, 1)}
	cmd := exec.Command(bin, "-n", "-f", conf, "-i", filepath.Join(dir, "rsyslogd.pid"))
	cmd.Stdout, cmd.Stderr = d.log, d.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-d.exited
	})
	for start := time.Now(); ; {
		// A plain TCP connection: rsyslogd logs a failed handshake, no more.
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return d
		}
		select {
		case err := <-d.exited:
			t.Fatalf("rsyslogd exited (%v) before it listened on %s:\n%s", err, addr, d.log.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Since(start) > time.Minute {
			t.Fatalf("rsyslogd does not listen on %s after a minute:\n%s", addr, d.log.String())
		}
	}
}

// waitFor waits until the file holds last, the final event sent, on a line
// of its own, and returns the file. It waits as long as the file grows and
// fails after a minute without progress.
func (d *rsyslogProc) waitFor(t *testing.T, file string, last []byte) []byte {
	t.Helper()
	size, progress := -1, time.Now()
	for {
		data, err := os.ReadFile(file)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		if bytes.HasSuffix(data, append(last, '\n')) {
			return data
		}
		if len(data) != size {
			size, progress = len(data), time.Now()
		}
		if time.Since(progress) > time.Minute {
			t.Fatalf("%s has not grown for a minute (%d bytes) and does not end with the last event; rsyslogd said:\n%s", file, size, d.log.String())
		}
		select {
		case err := <-d.exited:
			t.Fatalf("rsyslogd exited: %v\n%s", err, d.log.String())
		case <-time.After(50 * time.Millisecond):
		}
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

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// forwardMessageBytes is the largest forward message audittail sends with
// examples/config/fluentd.yaml: one batch holds up to batch.max_bytes of
// JSON lines, or a single longer event cut to max_record_bytes.
func forwardMessageBytes(t *testing.T) int64 {
	t.Helper()
	cfg := parseConfig(t, "config/fluentd.yaml")
	var o fluentd.Options
	if err := cfg.Outputs[0].DecodeOptions(&o); err != nil {
		t.Fatal(err)
	}
	record := int64(o.MaxRecordBytes)
	if record == 0 {
		record = fluentd.DefaultMaxRecordBytes
	}
	return max(int64(cfg.Batch.MaxBytes), record)
}

// wantReceiverBuffer is what a forward receiver must take in one message:
// twice forwardMessageBytes, since a record transcoded from JSON to msgpack
// can grow (a float such as 1.5 takes 9 bytes) and framing adds to it.
func wantReceiverBuffer(t *testing.T) int64 { return 2 * forwardMessageBytes(t) }

var sizeValue = regexp.MustCompile(`^([0-9]+)\s*([kKmMgG]?)[bB]?$`)

// parseSize reads a Fluent Bit or Fluentd size ("16M", "1m", "6144000"),
// taking k, m and g as powers of 1000: the smaller reading, so the check
// holds whether the tool counts in 1000s or 1024s.
func parseSize(t *testing.T, where, s string) int64 {
	t.Helper()
	m := sizeValue.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		t.Fatalf("%s: %q is not a size", where, s)
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		t.Fatalf("%s: %q: %v", where, s, err)
	}
	switch strings.ToLower(m[2]) {
	case "k":
		n *= 1000
	case "m":
		n *= 1000 * 1000
	case "g":
		n *= 1000 * 1000 * 1000
	}
	return n
}

// Neither Fluent Bit nor Fluentd is packaged in Debian 12, so their
// receiver configs are checked statically: the limits they set must hold
// the largest message audittail sends them.
func TestFluentBitReceiverTakesTheLargestBatch(t *testing.T) {
	data, err := os.ReadFile("receivers/fluent-bit.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Pipeline struct {
			Inputs []map[string]any `json:"inputs"`
		} `json:"pipeline"`
	}
	if err := yaml.Unmarshal(data, &c); err != nil {
		t.Fatalf("receivers/fluent-bit.yaml: %v", err)
	}
	want := wantReceiverBuffer(t)
	n := 0
	for _, in := range c.Pipeline.Inputs {
		if in["name"] != "forward" {
			continue
		}
		n++
		// in_forward's defaults: buffer_chunk_size 1024000, buffer_max_size 6144000.
		size := func(key, def string) int64 {
			v, ok := in[key]
			if !ok {
				v = def
			}
			return parseSize(t, "receivers/fluent-bit.yaml: "+key, fmt.Sprint(v))
		}
		maxSize, chunk := size("buffer_max_size", "6144000"), size("buffer_chunk_size", "1024000")
		if maxSize < want {
			t.Errorf("forward input: buffer_max_size %d bytes is below %d, twice the %d-byte batches of config/fluentd.yaml", maxSize, want, want/2)
		}
		if chunk > maxSize {
			t.Errorf("forward input: buffer_chunk_size %d is above buffer_max_size %d", chunk, maxSize)
		}
	}
	if n != 1 {
		t.Fatalf("receivers/fluent-bit.yaml has %d forward inputs, want 1", n)
	}
}

// fluentdSection is one <section> of a Fluentd config: its name and
// argument, parameters and subsections.
type fluentdSection struct {
	name, arg string
	params    map[string]string
	sub       []*fluentdSection
}

func parseFluentd(t *testing.T, file string) *fluentdSection {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	root := &fluentdSection{params: map[string]string{}}
	stack := []*fluentdSection{root}
	for n, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		cur := stack[len(stack)-1]
		switch {
		case line == "" || line[0] == '#':
		case strings.HasPrefix(line, "</"):
			if name := strings.Trim(line, "</>"); name != cur.name {
				t.Fatalf("%s:%d: </%s> closes <%s>", file, n+1, name, cur.name)
			}
			stack = stack[:len(stack)-1]
		case line[0] == '<':
			name, arg, _ := strings.Cut(strings.Trim(line, "<>"), " ")
			s := &fluentdSection{name: name, arg: strings.TrimSpace(arg), params: map[string]string{}}
			cur.sub = append(cur.sub, s)
			stack = append(stack, s)
		default:
			k, v, _ := strings.Cut(line, " ")
			cur.params[k] = strings.TrimSpace(v)
		}
	}
	if len(stack) != 1 {
		t.Fatalf("%s: <%s> is not closed", file, stack[len(stack)-1].name)
	}
	return root
}

func TestFluentdReceiverTakesTheLargestBatch(t *testing.T) {
	const file = "receivers/fluentd.conf"
	root := parseFluentd(t, file)
	want := wantReceiverBuffer(t)
	var forward, match *fluentdSection
	for _, s := range root.sub {
		switch {
		case s.name == "source" && s.params["@type"] == "forward":
			forward = s
		case s.name == "match" && s.arg == "kube.audit":
			match = s
		}
	}
	if forward == nil || match == nil {
		t.Fatalf("%s: want a forward <source> and a <match kube.audit>", file)
	}
	// in_forward drops a chunk larger than chunk_size_limit (default: no
	// limit); the example sets one, so that one client cannot take all memory.
	limit, ok := forward.params["chunk_size_limit"]
	if !ok {
		t.Fatalf("%s: the forward source sets no chunk_size_limit", file)
	}
	if got := parseSize(t, file+": chunk_size_limit", limit); got < want {
		t.Errorf("%s: chunk_size_limit %d bytes is below %d, twice the %d-byte batches of config/fluentd.yaml", file, got, want, want/2)
	}
	// A record larger than the buffer's chunk_limit_size is refused
	// (default for @type file: 256MB).
	for _, b := range match.sub {
		if b.name != "buffer" {
			continue
		}
		if v, ok := b.params["chunk_limit_size"]; ok {
			if got := parseSize(t, file+": chunk_limit_size", v); got < want {
				t.Errorf("%s: <buffer> chunk_limit_size %d bytes is below %d", file, got, want)
			}
		} else if b.params["@type"] != "file" {
			t.Errorf("%s: a <buffer> of @type %q without chunk_limit_size (memory: 8MB by default); set one", file, b.params["@type"])
		}
	}
}
