package webhook

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/audittail/audittail/parser/auditgen"
)

// benchBody is an EventList of n Metadata events, as kube-apiserver's
// batch webhook backend posts it (items without kind and apiVersion).
func benchBody(seed uint64, n int) []byte {
	g := auditgen.New(seed)
	var b bytes.Buffer
	b.WriteString(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[`)
	ts := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	var line []byte
	for i := range n {
		line = g.Append(line[:0], auditgen.Metadata, ts.Add(time.Duration(i)*time.Millisecond))
		line = bytes.TrimSpace(line)
		// The log backend's line begins {"kind":"Event","apiVersion":"audit.k8s.io/v1",
		// which the webhook backend's items do not have.
		if rest, ok := bytes.CutPrefix(line, []byte(`{"kind":"Event","apiVersion":"audit.k8s.io/v1",`)); ok {
			line = append([]byte{'{'}, rest...)
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(line)
	}
	b.WriteString("]}")
	return b.Bytes()
}

// BenchmarkWebhook posts 400-event EventLists (the webhook backend's
// default batch) over TLS to the handler; each 200 waits for the spool's
// fsync. The spool is on BENCH_DIR's disk (a tmpfs would make fsync free).
// It reports events/s accepted and the 99th percentile request latency:
// from 1 and from 16 clients posting as fast as they are answered (the
// most the agent accepts; latency is then the queue of 16 requests), and
// from 16 clients offering 50,000 events/s between them (12 apiservers at
// kube-apiserver's default throttle of 10 batches/s).
func BenchmarkWebhook(b *testing.B) {
	for _, run := range []struct {
		clients int
		rate    float64 // events/s offered by all clients; 0: as fast as answered
		discard bool    // the baseline: a handler that reads the body and answers 200
	}{{16, 0, true}, {1, 0, false}, {16, 0, false}, {16, 50000, false}} {
		clients := run.clients
		name := fmt.Sprintf("clients=%d", clients)
		if run.rate > 0 {
			name += fmt.Sprintf("/offered=%.0f", run.rate)
		}
		if run.discard {
			name = "baseline-discard/" + name
		}
		b.Run(name, func(b *testing.B) {
			dir, err := os.MkdirTemp(os.Getenv("BENCH_DIR"), "spool-")
			if err != nil {
				b.Fatal(err)
			}
			defer os.RemoveAll(dir)
			s, err := OpenSpool(dir, 1<<40, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			h := NewHandler(HandlerConfig{Token: []byte("bench")}, s)
			var handler http.Handler = h
			var discarded atomic.Int64
			if run.discard {
				handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					io.Copy(io.Discard, r.Body)
					discarded.Add(400)
				})
			}
			srv := httptest.NewTLSServer(handler)
			defer srv.Close()
			tr := srv.Client().Transport.(*http.Transport).Clone()
			tr.MaxIdleConnsPerHost = clients
			client := &http.Client{Transport: tr}
			bodies := make([][]byte, clients)
			for c := range bodies {
				bodies[c] = benchBody(uint64(c+1), 400)
			}
			var mu sync.Mutex
			var lat []time.Duration
			var wg sync.WaitGroup
			next := make(chan struct{}, b.N)
			for range b.N {
				next <- struct{}{}
			}
			close(next)
			b.SetBytes(int64(len(bodies[0])))
			b.ResetTimer()
			start := time.Now()
			var interval time.Duration // between one client's requests
			if run.rate > 0 {
				interval = time.Duration(float64(time.Second) * 400 * float64(clients) / run.rate)
			}
			for c := range clients {
				wg.Go(func() {
					var mine []time.Duration
					due := time.Now().Add(time.Duration(c) * interval / time.Duration(clients))
					for range next {
						if interval > 0 {
							time.Sleep(time.Until(due))
							due = due.Add(interval)
						}
						req, _ := http.NewRequest("POST", srv.URL+"/", bytes.NewReader(bodies[c]))
						req.Header.Set("Content-Type", "application/json")
						req.Header.Set("Authorization", "Bearer bench")
						t := time.Now()
						resp, err := client.Do(req)
						if err != nil {
							b.Error(err)
							return
						}
						resp.Body.Close()
						mine = append(mine, time.Since(t))
						if resp.StatusCode != 200 {
							b.Errorf("status %d", resp.StatusCode)
							return
						}
					}
					mu.Lock()
					lat = append(lat, mine...)
					mu.Unlock()
				})
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			if got := h.Stats.Events.Load() + discarded.Load(); got != int64(b.N*400) {
				b.Fatalf("%d events accepted of %d", got, b.N*400)
			}
			slices.Sort(lat)
			b.ReportMetric(float64(b.N*400)/elapsed.Seconds(), "events/s")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
			b.ReportMetric(float64(s.Stats.Fsyncs.Load())/float64(b.N), "fsyncs/req")
		})
	}
}
