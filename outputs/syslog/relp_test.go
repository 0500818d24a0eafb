package syslog

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/audittail/audittail/outputs"
	"github.com/audittail/audittail/outputs/outputstest"
)

// relpd is Debian's rsyslogd with imrelp (package rsyslog-relp, installed
// by make test), writing every message's MSG to a file. Its queues are
// Direct: imrelp answers "rsp 200" only once omfile has written the
// message, so that what was acknowledged survives a SIGKILL of rsyslogd.
type relpd struct {
	t      *testing.T
	addr   string
	out    string
	conf   string
	log    *syncBuffer
	cmd    *exec.Cmd
	exited chan error
}

func startRELP(t *testing.T, p *pki) *relpd {
	t.Helper()
	if _, err := exec.LookPath("rsyslogd"); err != nil {
		t.Fatalf("rsyslogd is not installed (make test installs rsyslog and rsyslog-relp): %v", err)
	}
	dir := t.TempDir()
	port := freePort(t)
	r := &relpd{t: t, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), out: filepath.Join(dir, "messages.log"), log: &syncBuffer{}}
	var conf strings.Builder
	fmt.Fprintf(&conf, "global(workDirectory=%q maxMessageSize=\"256k\")\n", dir)
	conf.WriteString("module(load=\"imrelp\")\nmain_queue(queue.type=\"Direct\")\n")
	conf.WriteString("template(name=\"msg\" type=\"string\" string=\"%msg%\\n\")\n")
	fmt.Fprintf(&conf, "ruleset(name=\"audit\" queue.type=\"Direct\") {\n  action(type=\"omfile\" file=%q template=\"msg\")\n}\n", r.out)
	fmt.Fprintf(&conf, "input(type=\"imrelp\" address=\"127.0.0.1\" port=\"%d\" ruleset=\"audit\" maxDataSize=\"300k\"", port)
	if p != nil {
		// Mutual TLS: imrelp wants a client certificate its CA signed.
		fmt.Fprintf(&conf, " tls=\"on\" tls.caCert=%q tls.myCert=%q tls.myPrivKey=%q tls.authMode=\"certvalid\"", p.caFile, p.certFile, p.keyFile)
	}
	conf.WriteString(")\n")
	r.conf = filepath.Join(dir, "rsyslog.conf")
	if err := os.WriteFile(r.conf, []byte(conf.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("rsyslogd", "-N1", "-f", r.conf).CombinedOutput(); err != nil {
		t.Fatalf("rsyslogd rejects its configuration: %v\n%s\n%s", err, out, conf.String())
	}
	r.start()
	t.Cleanup(r.kill)
	return r
}

func (r *relpd) start() {
	r.t.Helper()
	r.cmd = exec.Command("rsyslogd", "-n", "-f", r.conf, "-i", r.conf+".pid")
	r.cmd.Stdout, r.cmd.Stderr = r.log, r.log
	if err := r.cmd.Start(); err != nil {
		r.t.Fatalf("cannot start rsyslogd: %v", err)
	}
	r.exited = make(chan error, 1)
	go func(c *exec.Cmd, ch chan error) { ch <- c.Wait() }(r.cmd, r.exited)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", r.addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case err := <-r.exited:
			r.exited <- err
			r.t.Fatalf("rsyslogd exited (%v); its output:\n%s", err, r.log.String())
		default:
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("rsyslogd does not listen on %s; its output:\n%s", r.addr, r.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill SIGKILLs rsyslogd and waits for it.
func (r *relpd) kill() {
	if r.cmd == nil {
		return
	}
	r.cmd.Process.Signal(syscall.SIGKILL)
	<-r.exited
	r.cmd = nil
}

// ids returns the auditIDs of the messages rsyslogd wrote, in order.
func (r *relpd) ids() []string {
	data, _ := os.ReadFile(r.out)
	var ids []string
	for _, l := range bytes.Split(data, []byte("\n")) {
		l = bytes.TrimPrefix(l, bom)
		if len(l) == 0 {
			continue
		}
		var ev struct{ AuditID string }
		if json.Unmarshal(l, &ev) == nil {
			ids = append(ids, ev.AuditID)
		}
	}
	return ids
}

func TestRELPConformanceAgainstRsyslog(t *testing.T) {
	for _, tc := range []struct {
		name string
		tls  bool
	}{{"relp", false}, {"relp+tls", true}} {
		t.Run(tc.name, func(t *testing.T) {
			var p *pki
			if tc.tls {
				p = testPKI(t)
			}
			r := startRELP(t, p)
			var skip int
			outputstest.Run(t, outputstest.Harness{
				New: func(t *testing.T) outputs.Output {
					o := Options{Address: tc.name + "://" + r.addr, Hostname: "cp-relp", MaxMessageBytes: 256 << 10}
					if p != nil {
						o.TLS = TLSOptions{CAFile: p.caFile, CertFile: p.clientCertFile, KeyFile: p.clientKeyFile}
					}
					out, err := New(o, nil)
					if err != nil {
						t.Fatal(err)
					}
					return out
				},
				Received: func() []string { return r.ids()[skip:] },
				Reset:    func() { skip = len(r.ids()) },
			})
		})
	}
}

// TestRELPLosesNothingWhenRsyslogIsKilled ships 20,000 events through the
// agent while rsyslogd is SIGKILLed twice and restarted: every event is in
// rsyslogd's file afterwards (duplicates allowed), which plain TCP cannot
// promise.
func TestRELPLosesNothingWhenRsyslogIsKilled(t *testing.T) {
	for _, tc := range []struct {
		name string
		tls  bool
	}{{"relp", false}, {"relp+tls", true}} {
		t.Run(tc.name, func(t *testing.T) {
			var p *pki
			yaml := ""
			if tc.tls {
				p = testPKI(t)
				yaml = fmt.Sprintf("    tls: {ca_file: %s, cert_file: %s, key_file: %s}\n", p.caFile, p.clientCertFile, p.clientKeyFile)
			}
			r := startRELP(t, p)
			const n = 20000
			input, lines := writeAuditLog(t, 77, n)
			var want []string
			for _, l := range lines {
				var ev struct{ AuditID string }
				json.Unmarshal(l, &ev)
				want = append(want, ev.AuditID)
			}
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(1)
			kills := 0
			go func() {
				defer wg.Done()
				for _, at := range []int{n / 4, n / 2} {
					for len(r.ids()) < at {
						select {
						case <-stop:
							return
						case <-time.After(5 * time.Millisecond):
						}
					}
					r.kill()
					kills++
					time.Sleep(300 * time.Millisecond)
					r.start()
				}
			}()
			_, sum := runAgent(t, input, fmt.Sprintf("    address: %s://%s\n    hostname: cp-relp\n    max_message_bytes: 256KiB\n%s", tc.name, r.addr, yaml))
			close(stop)
			wg.Wait()
			if sum.Sent.DeadLettered != 0 {
				t.Fatalf("agent dead-lettered %d events", sum.Sent.DeadLettered)
			}
			got := map[string]int{}
			for _, id := range r.ids() {
				got[id]++
			}
			missing, dups := 0, 0
			for _, id := range want {
				if got[id] == 0 {
					missing++
				}
			}
			for _, c := range got {
				dups += c - 1
			}
			if kills != 2 {
				t.Fatalf("rsyslogd was killed %d times, want 2 (the agent finished first?)", kills)
			}
			if missing > 0 {
				t.Fatalf("%d of %d events missing after rsyslogd was killed %d times\n%s", missing, n, kills, r.log.String())
			}
			t.Logf("%d events, all in rsyslogd's file after %d SIGKILLs; %d duplicates", n, kills, dups)
		})
	}
}

// fakeRELP is a scripted RELP server: it answers open, then each syslog
// frame as answer says (in order, or reversed per window), and records
// how many frames awaited an answer at most.
type fakeRELP struct {
	ln          net.Listener
	mu          sync.Mutex
	maxInflight int
	got         []string
	// answer returns the rsp data for the k-th syslog frame, or "" to
	// send serverclose and close the connection instead.
	answer func(k int, msg []byte) string
	frames int
}

func newFakeRELP(t *testing.T, answer func(k int, msg []byte) string) *fakeRELP {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeRELP{ln: ln, answer: answer}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go f.serve(c)
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return f
}

func (f *fakeRELP) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	var pending []int // TXNRs read, not answered
	var data [][]byte
	flushAnswers := func() bool {
		for i, t := range pending {
			f.mu.Lock()
			k := f.frames
			f.frames++
			a := f.answer(k, data[i])
			if a != "" && strings.HasPrefix(a, "200") {
				var ev struct{ AuditID string }
				json.Unmarshal(bytes.TrimPrefix(data[i][bytes.Index(data[i], []byte("{")):], bom), &ev)
				f.got = append(f.got, ev.AuditID)
			}
			f.mu.Unlock()
			if a == "" {
				fmt.Fprint(c, "0 serverclose 0\n")
				return false
			}
			fmt.Fprintf(c, "%d rsp %d %s\n", t, len(a), a)
		}
		pending, data = pending[:0], data[:0]
		return true
	}
	for {
		fr, err := readRELPFrame(r, 1<<20)
		if err != nil {
			return
		}
		switch fr.cmd {
		case "open":
			fmt.Fprintf(c, "%d rsp %d 200 OK\n%s\n", fr.txnr, len("200 OK\n")+len(relpOffers), relpOffers)
		case "close":
			fmt.Fprintf(c, "%d rsp 0\n0 serverclose 0\n", fr.txnr)
			return
		case "syslog":
			pending = append(pending, fr.txnr)
			data = append(data, fr.data)
			f.mu.Lock()
			f.maxInflight = max(f.maxInflight, len(pending))
			f.mu.Unlock()
			// Answer once nothing more is buffered: the client's whole
			// window has arrived.
			if r.Buffered() == 0 {
				c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
				if _, err := r.Peek(1); err != nil {
					c.SetReadDeadline(time.Time{})
					if !flushAnswers() {
						return
					}
				}
				c.SetReadDeadline(time.Time{})
			}
		}
	}
}

func TestRELPWindowBoundsUnansweredMessages(t *testing.T) {
	f := newFakeRELP(t, func(int, []byte) string { return "200 OK" })
	o, err := New(Options{Address: "relp://" + f.ln.Addr().String(), RELPWindow: 16, Hostname: "h"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close(context.Background())
	b, ids := outputstest.NewBatch(3, 200)
	if err := o.Send(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.maxInflight > 16 {
		t.Fatalf("%d messages awaited an answer at once, window 16", f.maxInflight)
	}
	if !reflect.DeepEqual(f.got, ids) {
		t.Fatalf("server took %d messages, want the batch's %d in order", len(f.got), len(ids))
	}
}

func TestRELPRefusedMessagesAreRejectedAndABrokenSessionResendsTheUnanswered(t *testing.T) {
	f := newFakeRELP(t, func(k int, _ []byte) string {
		switch {
		case k == 3:
			return "500 cannot take it"
		case k == 5:
			return "400 not a message I take"
		case k == 10:
			return "" // serverclose: the rest of the window is unanswered
		}
		return "200 OK"
	})
	o, err := New(Options{Address: "relp://" + f.ln.Addr().String(), RELPWindow: 4, Hostname: "h"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close(context.Background())
	b, _ := outputstest.NewBatch(4, 30)
	err = o.Send(context.Background(), b)
	var pe *outputs.PartialError
	if !errors.As(err, &pe) {
		t.Fatalf("Send = %v, want a PartialError after serverclose", err)
	}
	// Frames 0-9 answered (3 with 500: to send again; 5 refused), 10 and
	// after not: 3, 5 and everything from line 10 are sent again.
	want := []int{3, 5}
	for i := 10; i < 30; i++ {
		want = append(want, i)
	}
	if !reflect.DeepEqual(pe.Lines, want) {
		t.Fatalf("PartialError.Lines = %v, want %v", pe.Lines, want)
	}
	b.Keep(pe.Lines)
	err = o.Send(context.Background(), b)
	if err != nil {
		t.Fatalf("resend on a new session = %v", err)
	}
	// A 500 alone, the session intact: that line is sent again.
	f2 := newFakeRELP(t, func(k int, _ []byte) string {
		if k == 1 {
			return "500 queue full"
		}
		if k == 4 {
			return "400 no"
		}
		return "200 OK"
	})
	o2, err := New(Options{Address: "relp://" + f2.ln.Addr().String(), Hostname: "h"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer o2.Close(context.Background())
	b2, _ := outputstest.NewBatch(5, 6)
	err = o2.Send(context.Background(), b2)
	if !errors.As(err, &pe) || !reflect.DeepEqual(pe.Lines, []int{1, 4}) {
		t.Fatalf("Send with one 500 and one 400 = %v, want a PartialError of lines 1 and 4", err)
	}
}

func TestReadRELPFrame(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want relpFrame
		err  bool
	}{
		{in: "1 rsp 6 200 OK\n", want: relpFrame{1, "rsp", []byte("200 OK")}},
		{in: "4 rsp 0\n", want: relpFrame{4, "rsp", nil}},
		{in: "0 serverclose 0\n", want: relpFrame{0, "serverclose", nil}},
		{in: "999999999 rsp 3 200\n", want: relpFrame{999999999, "rsp", []byte("200")}},
		{in: "12 rsp 2 a\nb\n", want: relpFrame{12, "rsp", []byte("a\n")}, err: true},
		{in: "1000000000 rsp 0\n", err: true},
		{in: "x rsp 0\n", err: true},
		{in: "1 rsp 5 200\n", err: true},
		{in: "1  rsp 0\n", err: true},
		{in: "1 rsp 0 \n", want: relpFrame{1, "rsp", []byte{}}}, // an empty DATA after SP: taken
		{in: "1 rsp 70000 " + strings.Repeat("a", 70000) + "\n", err: true},
		{in: "1 rsp", err: true},
	} {
		f, err := readRELPFrame(bufio.NewReader(strings.NewReader(tc.in)), relpMaxRspData)
		if (err != nil) != tc.err {
			t.Errorf("%.30q: err = %v", tc.in, err)
			continue
		}
		if !tc.err && !reflect.DeepEqual(f, tc.want) {
			t.Errorf("%q: %+v, want %+v", tc.in, f, tc.want)
		}
	}
}

// FuzzReadRELPFrame checks that the frame reader never panics or reads
// past a frame, and that a frame it accepts is written back the same.
func FuzzReadRELPFrame(f *testing.F) {
	for _, s := range []string{"1 rsp 6 200 OK\n", "4 rsp 0\n", "0 serverclose 0\n", "2 rsp 93 200 OK\nrelp_version=0\nrelp_software=librelp,1.11.0,http://librelp.adiscon.com\ncommands=syslog\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bufio.NewReader(bytes.NewReader(in))
		fr, err := readRELPFrame(r, 1<<16)
		if err != nil {
			return
		}
		var out bytes.Buffer
		fmt.Fprintf(&out, "%d %s %d", fr.txnr, fr.cmd, len(fr.data))
		if len(fr.data) > 0 {
			out.WriteByte(' ')
			out.Write(fr.data)
		}
		out.WriteByte('\n')
		again, err := readRELPFrame(bufio.NewReader(bytes.NewReader(out.Bytes())), 1<<16)
		if err != nil || again.txnr != fr.txnr || again.cmd != fr.cmd || !bytes.Equal(again.data, fr.data) {
			t.Fatalf("accepted %q as %+v, but its re-encoding %q reads as %+v, %v", in, fr, out.Bytes(), again, err)
		}
		if consumed := len(in) - r.Buffered(); consumed > len(in) || in[consumed-1] != '\n' {
			t.Fatalf("a frame of %q did not end at an LF", in)
		}
	})
}
