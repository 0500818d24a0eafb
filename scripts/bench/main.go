// Command bench measures audittail end to end: it writes a corpus of
// Metadata-level audit events, times `cat` on it, then runs `audittail
// backfill` on it into each output with a receiver on 127.0.0.1, and prints
// events/s, MB/s, CPU seconds per GB and peak RSS as a Markdown table.
//
//	go run ./scripts/bench -bin bin/audittail -mb 1000 -outputs null,fluentd,syslog,relp,rsyslog-omrelp,relp-sink,logdna,otlp,elasticsearch,webhook,ibmcloudlogs
package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/audittail/audittail/outputs/fluentd/fluentdtest"
	"github.com/audittail/audittail/parser/auditgen"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type result struct {
	name            string
	events          int64
	bytes           int64
	wall, cpu       time.Duration
	maxRSSKiB       int64
	receiverEvents  int64
	receiverChecked bool
}

func run() error {
	bin := flag.String("bin", "bin/audittail", "the audittail binary")
	mb := flag.Int("mb", 1000, "corpus size in MB")
	dir := flag.String("dir", ".bench", "where the corpus and state go")
	outs := flag.String("outputs", "null,fluentd,syslog,relp,rsyslog-omrelp,relp-sink,logdna,otlp,elasticsearch,webhook,ibmcloudlogs", "outputs to measure")
	flag.Parse()
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		return err
	}
	if abs, err := filepath.Abs(*dir); err == nil {
		*dir = abs
	}
	corpus, size, events, err := makeCorpus(*dir, *mb)
	if err != nil {
		return err
	}
	fmt.Printf("corpus: %s, %d Metadata events, %.0f MB\n", corpus, events, float64(size)/1e6)
	catTime, err := timeCat(corpus)
	if err != nil {
		return err
	}
	var results []result
	for _, name := range strings.Split(*outs, ",") {
		measureOne := measure
		if name == "rsyslog-omrelp" {
			measureOne = func(_, dir, corpus, _ string) (result, error) { return measureOmrelp(dir, corpus, events) }
		}
		r, err := measureOne(*bin, *dir, corpus, name)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		r.bytes = size
		results = append(results, r)
		fmt.Fprintf(os.Stderr, "  %s done in %s\n", name, r.wall.Round(time.Millisecond))
	}
	host, _ := os.Hostname()
	fmt.Printf("\n%s, %s, %d cores, Go binary %s\n\n", time.Now().UTC().Format("2006-01-02"), host, numCPU(), *bin)
	fmt.Println("| path | events/s | MB/s | CPU s per GB | peak RSS | vs cat |")
	fmt.Println("|---|---:|---:|---:|---:|---:|")
	catMBs := float64(size) / 1e6 / catTime.Seconds()
	fmt.Printf("| `cat file >/dev/null` | | %.0f | | | 1.00 |\n", catMBs)
	for _, r := range results {
		mbs := float64(r.bytes) / 1e6 / r.wall.Seconds()
		fmt.Printf("| file → %s | %.0f | %.0f | %.2f | %.0f MiB | %.2f |\n", r.name,
			float64(r.events)/r.wall.Seconds(), mbs, r.cpu.Seconds()/(float64(r.bytes)/1e9), float64(r.maxRSSKiB)/1024, mbs/catMBs)
	}
	for _, r := range results {
		if r.events != events {
			return fmt.Errorf("%s delivered %d events of %d", r.name, r.events, events)
		}
		if r.receiverChecked && r.receiverEvents < events {
			return fmt.Errorf("%s receiver holds %d events of %d", r.name, r.receiverEvents, events)
		}
	}
	return nil
}

func numCPU() int {
	data, _ := os.ReadFile("/proc/cpuinfo")
	return strings.Count(string(data), "processor\t:")
}

func makeCorpus(dir string, mb int) (string, int64, int64, error) {
	path := filepath.Join(dir, fmt.Sprintf("corpus-metadata-%dmb.log", mb))
	count := path + ".events"
	if fi, err := os.Stat(path); err == nil {
		if c, err := os.ReadFile(count); err == nil {
			n, _ := strconv.ParseInt(strings.TrimSpace(string(c)), 10, 64)
			return path, fi.Size(), n, nil
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return "", 0, 0, err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	g := auditgen.New(2026)
	ts := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	var buf []byte
	var size, n int64
	for size < int64(mb)*1e6 {
		buf = g.Append(buf[:0], auditgen.Metadata, ts)
		ts = ts.Add(100 * time.Microsecond)
		w.Write(buf)
		size += int64(len(buf))
		n++
	}
	if err := w.Flush(); err != nil {
		return "", 0, 0, err
	}
	f.Close()
	return path, size, n, os.WriteFile(count, []byte(strconv.FormatInt(n, 10)), 0o644)
}

// timeCat returns the best of three `cat file >/dev/null` runs.
func timeCat(path string) (time.Duration, error) {
	best := time.Duration(1<<63 - 1)
	for range 3 {
		cmd := exec.Command("cat", path)
		null, _ := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
		cmd.Stdout = null
		start := time.Now()
		if err := cmd.Run(); err != nil {
			return 0, err
		}
		null.Close()
		best = min(best, time.Since(start))
	}
	return best, nil
}

var deliveredRe = regexp.MustCompile(`output \S+: read \d+, delivered (\d+)`)

// measure runs backfill on the corpus into one output. r is named: the
// receiver's count, taken by the deferred stop, is part of the result.
func measure(bin, dir, corpus, name string) (r result, err error) {
	r = result{name: name}
	var output string
	stop := func() {}
	switch name {
	case "null":
		output = "  - type: null\n"
	case "fluentd":
		rcv, err := fluentdtest.Start(fluentdtest.Config{Discard: true})
		if err != nil {
			return r, err
		}
		stop = func() { r.receiverEvents, r.receiverChecked = int64(rcv.Count()), true; rcv.Close() }
		output = fmt.Sprintf("  - type: fluentd\n    address: tcp://%s\n", rcv.Addr())
	case "logdna":
		srv, count, err := logdnaSink()
		if err != nil {
			return r, err
		}
		stop = func() { srv.Close() }
		_ = count
		os.Setenv("BENCH_LOGDNA_KEY", "bench")
		output = fmt.Sprintf("  - type: logdna\n    url: http://%s/logs/ingest\n    ingestion_key_env: BENCH_LOGDNA_KEY\n    hostname: bench\n", srv.Addr)
	case "otlp":
		srv, _, err := logdnaSink() // reads each request and answers 200: an OTLP success
		if err != nil {
			return r, err
		}
		stop = func() { srv.Close() }
		output = fmt.Sprintf("  - type: otlp\n    endpoint: http://%s\n    node_name: bench\n    compression: %s\n", srv.Addr, os.Getenv("BENCH_OTLP_COMPRESSION"))
	case "elasticsearch":
		srv, docs, err := bulkSink()
		if err != nil {
			return r, err
		}
		stop = func() { srv.Close(); r.receiverEvents, r.receiverChecked = docs.Load(), true }
		output = fmt.Sprintf("  - type: elasticsearch\n    urls: [\"http://%s\"]\n    compression: %s\n", srv.Addr, os.Getenv("BENCH_ES_COMPRESSION"))
	case "ibmcloudlogs":
		srv, err := cloudLogsSink()
		if err != nil {
			return r, err
		}
		stop = func() { srv.Close() }
		key := filepath.Join(dir, "bench-ibm-api-key")
		if err := os.WriteFile(key, []byte("bench"), 0o600); err != nil {
			return r, err
		}
		output = fmt.Sprintf("  - type: ibmcloudlogs\n    endpoint: http://%s\n    iam_endpoint: http://%s/identity/token\n    api_key_file: %s\n    computer_name: bench\n", srv.Addr, srv.Addr, key)
	case "webhook":
		srv, _, err := logdnaSink() // reads each EventList and answers 200
		if err != nil {
			return r, err
		}
		stop = func() { srv.Close() }
		output = fmt.Sprintf("  - type: webhook\n    url: http://%s/k8s-audit\n", srv.Addr)
	case "relp":
		addr, stopSyslog, err := startRsyslogInput(dir, "imrelp")
		if err != nil {
			return r, err
		}
		stop = func() { stopSyslog(); r.receiverEvents, r.receiverChecked = relpReceived(dir), true }
		output = fmt.Sprintf("  - type: syslog\n    address: relp://%s\n    hostname: bench\n", addr)
		if w := os.Getenv("BENCH_RELP_WINDOW"); w != "" {
			output += "    relp_window: " + w + "\n"
		}
	case "relp-sink":
		addr, stopSink, err := relpSink()
		if err != nil {
			return r, err
		}
		stop = stopSink
		output = fmt.Sprintf("  - type: syslog\n    address: relp://%s\n    hostname: bench\n", addr)
	case "syslog":
		addr, stopSyslog, err := startRsyslog(dir)
		if err != nil {
			return r, err
		}
		stop = stopSyslog
		output = fmt.Sprintf("  - type: syslog\n    address: tcp://%s\n    hostname: bench\n", addr)
	default:
		return r, fmt.Errorf("unknown output %q", name)
	}
	defer stop()
	state := filepath.Join(dir, "state-"+name)
	os.RemoveAll(state)
	cfg := filepath.Join(dir, "bench-"+name+".yaml")
	body := fmt.Sprintf("state_dir: %s\ninputs: [{path: %s}]\nmetrics: {listen: \"off\"}\nlog: {level: warn}\noutputs:\n%s", state, corpus, output)
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		return r, err
	}
	cmd := exec.Command(bin, "backfill", "--config", cfg, corpus)
	var out strings.Builder
	cmd.Stdout = &out
	cmd.Stderr = os.Stderr
	start := time.Now()
	err = cmd.Run()
	r.wall = time.Since(start)
	if err != nil {
		return r, fmt.Errorf("backfill: %w\n%s", err, out.String())
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		r.maxRSSKiB = ru.Maxrss
	}
	m := deliveredRe.FindStringSubmatch(out.String())
	if m == nil {
		return r, fmt.Errorf("no summary in:\n%s", out.String())
	}
	r.events, _ = strconv.ParseInt(m[1], 10, 64)
	return r, nil
}

// logdnaSink answers every ingest request 200 after reading its body.
func logdnaSink() (*http.Server, *int64, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	var n int64
	srv := &http.Server{Addr: ln.Addr().String(), Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := io.Copy(io.Discard, r.Body)
		n += c
		w.WriteHeader(http.StatusOK)
	})}
	go srv.Serve(ln)
	return srv, &n, nil
}

// bulkSink answers every _bulk request as Elasticsearch does when every
// document was created ({"errors":false}), counting the documents (one
// action line and one document line each).
func bulkSink() (*http.Server, *atomic.Int64, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	var docs atomic.Int64
	buf := make([]byte, 1<<20)
	srv := &http.Server{Addr: ln.Addr().String(), Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			body = zr
		}
		var lines int64
		for {
			n, err := body.Read(buf)
			lines += int64(bytes.Count(buf[:n], []byte{'\n'}))
			if err != nil {
				break
			}
		}
		docs.Add(lines / 2)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"errors":false}`)
	})}
	go srv.Serve(ln)
	return srv, &docs, nil
}

// cloudLogsSink is IBM Cloud IAM's token endpoint (an hour-long token)
// and the singles endpoint answering 200 after reading each body.
func cloudLogsSink() (*http.Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/identity/token", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"access_token":"bench","token_type":"Bearer","expires_in":3600}`)
	})
	mux.HandleFunc("/logs/v1/singles", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{}`)
	})
	srv := &http.Server{Addr: ln.Addr().String(), Handler: mux}
	go srv.Serve(ln)
	return srv, nil
}

// relpSink is a minimal RELP server: it answers open, every syslog frame
// "200 OK" (its answers flushed whenever no more input is buffered) and
// close. It measures the RELP client where rsyslogd's imrelp is the
// bottleneck.
func relpSink() (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	serve := func(c net.Conn) {
		defer c.Close()
		r := bufio.NewReaderSize(c, 256<<10)
		w := bufio.NewWriterSize(c, 64<<10)
		for {
			var txnr, size int
			var cmd string
			if _, err := fmt.Fscanf(r, "%d %s %d", &txnr, &cmd, &size); err != nil {
				return
			}
			if size > 0 {
				if _, err := r.Discard(size + 1); err != nil { // SP and DATA
					return
				}
			}
			if b, err := r.ReadByte(); err != nil || b != '\n' {
				return
			}
			switch cmd {
			case "open":
				offers := "200 OK\nrelp_version=0\nrelp_software=bench\ncommands=syslog"
				fmt.Fprintf(w, "%d rsp %d %s\n", txnr, len(offers), offers)
			case "close":
				fmt.Fprintf(w, "%d rsp 0\n", txnr)
				w.Flush()
				return
			default:
				fmt.Fprintf(w, "%d rsp 6 200 OK\n", txnr)
			}
			if r.Buffered() == 0 {
				if w.Flush() != nil {
					return
				}
			}
		}
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serve(c)
		}
	}()
	return ln.Addr().String(), func() { ln.Close() }, nil
}

// startRsyslog runs Debian's rsyslogd on a free port, writing to /dev/null.
func startRsyslog(dir string) (string, func(), error) { return startRsyslogInput(dir, "imtcp") }

// startRsyslogInput runs rsyslogd with input module imtcp or imrelp (the
// RELP row: Direct queues, so each "rsp 200" waits for the write, as in
// examples/rsyslog/relp.conf).
func startRsyslogInput(dir, module string) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	work := filepath.Join(dir, "rsyslog")
	os.RemoveAll(work)
	os.MkdirAll(work, 0o755)
	conf := filepath.Join(work, "rsyslog.conf")
	body := fmt.Sprintf(`global(workDirectory="%s" maxMessageSize="256k")
module(load="imtcp")
input(type="imtcp" address="127.0.0.1" port="%d")
action(type="omfile" file="/dev/null")
`, work, port)
	if module == "imrelp" {
		body = fmt.Sprintf(`global(workDirectory="%s" maxMessageSize="256k")
module(load="imrelp")
main_queue(queue.type="Direct")
template(name="one" type="string" string="x\n")
ruleset(name="relp" queue.type="Direct") { action(type="omfile" file="%s" template="one") }
input(type="imrelp" address="127.0.0.1" port="%d" ruleset="relp" maxDataSize="300k")
`, work, filepath.Join(work, "received"), port)
	}
	os.WriteFile(conf, []byte(body), 0o644)
	cmd := exec.Command("rsyslogd", "-n", "-f", conf, "-i", filepath.Join(work, "pid"))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("rsyslogd (install Debian's rsyslog): %w", err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			return "", nil, errors.New("rsyslogd did not listen within 10s")
		}
	}
	return addr, func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}, nil
}

// relpReceived counts the messages the imrelp receiver wrote (two bytes
// each).
func relpReceived(dir string) int64 {
	fi, err := os.Stat(filepath.Join(dir, "rsyslog", "received"))
	if err != nil {
		return 0
	}
	return fi.Size() / 2
}

// measureOmrelp is the RELP row's baseline: rsyslog's own RELP client
// (imfile reading the corpus, omrelp sending it) into the same imrelp
// receiver. It ends when the receiver has every event; CPU and RSS are
// the sending rsyslogd's.
func measureOmrelp(dir, corpus string, events int64) (result, error) {
	r := result{name: "rsyslog-omrelp"}
	addr, stopReceiver, err := startRsyslogInput(dir, "imrelp")
	if err != nil {
		return r, err
	}
	defer stopReceiver()
	_, port, _ := net.SplitHostPort(addr)
	work := filepath.Join(dir, "rsyslog-sender")
	os.RemoveAll(work)
	os.MkdirAll(work, 0o755)
	conf := filepath.Join(work, "rsyslog.conf")
	body := fmt.Sprintf(`global(workDirectory="%s" maxMessageSize="256k")
module(load="imfile" mode="inotify")
module(load="omrelp")
input(type="imfile" file="%s" tag="audit:" facility="local0" severity="info" freshStartTail="off")
main_queue(queue.dequeueBatchSize="1024")
action(type="omrelp" target="127.0.0.1" port="%s" windowSize="1024")
`, work, corpus, port)
	os.WriteFile(conf, []byte(body), 0o644)
	cmd := exec.Command("rsyslogd", "-n", "-f", conf, "-i", filepath.Join(work, "pid"))
	cmd.Stderr = os.Stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return r, fmt.Errorf("rsyslogd: %w", err)
	}
	prev, since := int64(-1), time.Now()
	for {
		n := relpReceived(dir)
		if n >= events {
			r.wall = time.Since(start)
			break
		}
		if n != prev {
			prev, since = n, time.Now()
		} else if time.Since(since) > 30*time.Second {
			cmd.Process.Kill()
			cmd.Wait()
			return r, fmt.Errorf("omrelp: the receiver holds %d events of %d and got none for 30s", n, events)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		r.maxRSSKiB = ru.Maxrss
	}
	r.events, r.receiverEvents, r.receiverChecked = events, relpReceived(dir), true
	return r, nil
}

var _ = context.Background
