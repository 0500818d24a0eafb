// Package kafkatest runs the kafka output against franz-go's in-process
// cluster (pkg/kfake) on 127.0.0.1: the conformance suite, and faults
// (retriable produce errors, partition leaders moving, the cluster
// restarted mid-stream) with the records read back by a consumer. It is a
// module of its own so that kfake stays out of audittail's go.mod.
package kafkatest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/audittail/audittail/outputs"
	"github.com/audittail/audittail/outputs/kafka"
	"github.com/audittail/audittail/outputs/outputstest"
)

// newCluster starts kfake on 127.0.0.1 and closes it at the end of the
// test.
func newCluster(t testing.TB, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.ListenFn(func(network, _ string) (net.Listener, error) {
		return net.Listen(network, "127.0.0.1:0")
	})}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func createTopic(t testing.TB, brokers []string, topic string, partitions int32) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := kadm.NewClient(cl).CreateTopic(ctx, partitions, 1, nil, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
}

// record is one record read back.
type record struct {
	partition int32
	offset    int64
	id        string // auditID+"/"+stage, decoded from the value with encoding/json
	header    string // the auditID header
}

// readAll consumes topic from the start until want distinct events were
// read (or 20s passed) and returns every record, per partition in offset
// order.
func readAll(t testing.TB, brokers []string, topic string, want int) []record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var recs []record
	distinct := map[string]bool{}
	deadline := time.Now().Add(20 * time.Second)
	for len(distinct) < want && time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		fs := cl.PollFetches(ctx)
		cancel()
		fs.EachRecord(func(r *kgo.Record) {
			rec := decode(t, r)
			distinct[rec.id] = true
			recs = append(recs, rec)
		})
	}
	return recs
}

func decode(t testing.TB, r *kgo.Record) record {
	var ev struct {
		AuditID string `json:"auditID"`
		Stage   string `json:"stage"`
	}
	if err := json.Unmarshal(r.Value, &ev); err != nil {
		t.Errorf("record %d/%d is not JSON: %v", r.Partition, r.Offset, err)
	}
	rec := record{partition: r.Partition, offset: r.Offset, id: ev.AuditID + "/" + ev.Stage}
	for _, h := range r.Headers {
		if h.Key == "auditID" {
			rec.header = string(h.Value)
		}
	}
	if rec.header != ev.AuditID {
		t.Errorf("record %d/%d: auditID header %q, value's auditID %q", r.Partition, r.Offset, rec.header, ev.AuditID)
	}
	return rec
}

// collector consumes one topic in the background for the conformance
// suite.
type collector struct {
	mu   sync.Mutex
	ids  []string
	stop func()
}

func collect(t testing.TB, brokers []string, topic string) *collector {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &collector{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			fs.EachRecord(func(r *kgo.Record) {
				rec := decode(t, r)
				c.mu.Lock()
				c.ids = append(c.ids, rec.header)
				c.mu.Unlock()
			})
		}
	}()
	c.stop = func() { cancel(); <-done; cl.Close() }
	return c
}

func (c *collector) received() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.ids)
}

type tlog struct{ t testing.TB }

func (w tlog) Write(p []byte) (int, error) { w.t.Log(strings.TrimSpace(string(p))); return len(p), nil }

func newOutput(t testing.TB, brokers []string, topic string, timeout time.Duration) *kafka.Output {
	t.Helper()
	o, err := kafka.New(kafka.Options{Brokers: brokers, Topic: topic, Timeout: timeout}, slog.New(slog.NewTextHandler(tlog{t}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// TestConformance runs outputstest against kfake. A topic of one partition
// gives the consumer one order to compare. A transient failure is a broker
// that holds produce requests past the output's timeout. The suite's
// permanent-rejection case is skipped: Kafka rejects no well-formed event
// (oversized events are dead-lettered before producing: see
// TestAnOversizedEventIsCutOrDeadLettered).
func TestConformance(t *testing.T) {
	c := newCluster(t, kfake.NumBrokers(1))
	brokers := c.ListenAddrs()
	const timeout = time.Second
	var (
		n     int
		topic string
		col   *collector
		hold  atomic.Int32
	)
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if hold.Load() > 0 {
			hold.Add(-1)
			c.SleepControl(func() { time.Sleep(timeout + 500*time.Millisecond) })
		}
		return nil, nil, false
	})
	t.Cleanup(func() {
		if col != nil {
			col.stop()
		}
	})
	outputstest.Run(t, outputstest.Harness{
		New: func(t *testing.T) outputs.Output { return newOutput(t, brokers, topic, timeout) },
		Received: func() []string {
			return col.received()
		},
		FailTransient: func(k int) { hold.Store(int32(k)) },
		Reset: func() {
			if col != nil {
				col.stop()
			}
			n++
			topic = fmt.Sprintf("audit-%d", n)
			createTopic(t, brokers, topic, 1)
			col = collect(t, brokers, topic)
			hold.Store(0)
		},
	})
}

// sendAll sends each batch until it is acknowledged, as the agent does
// (a short backoff; a RetryAfterError is waited for only up to a second).
// between is called after each acknowledged batch.
func sendAll(t *testing.T, o outputs.Output, batches []*outputs.Batch, between func(i int)) (retries int) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for i, b := range batches {
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := o.Send(ctx, b)
			cancel()
			if err == nil {
				break
			}
			var rej *outputs.RejectedError
			if errors.As(err, &rej) || outputs.IsPermanent(err) {
				t.Fatalf("batch %d: %v", i, err)
			}
			t.Logf("batch %d: %v", i, err)
			if time.Now().After(deadline) {
				t.Fatalf("batch %d still not acknowledged: %v", i, err)
			}
			retries++
			time.Sleep(50 * time.Millisecond)
		}
		if between != nil {
			between(i)
		}
	}
	return retries
}

// stream makes n batches of 100 events each and returns them with the
// event ids (auditID/stage) in send order.
func stream(n int) ([]*outputs.Batch, []string) {
	var batches []*outputs.Batch
	var order []string
	for i := range n {
		b, _ := outputstest.NewBatch(uint64(1000+i), 100)
		for j := range b.Len() {
			ev := b.Event(j)
			order = append(order, strings.Trim(string(ev.AuditID), `"`)+"/"+strings.Trim(string(ev.Stage), `"`))
		}
		batches = append(batches, b)
	}
	return batches, order
}

// checkAtLeastOnceInOrder fails unless every event of order was read, and
// within each partition the events first appear in the order they were
// sent (a duplicate may repeat an earlier event, never reorder).
func checkAtLeastOnceInOrder(t *testing.T, recs []record, order []string) {
	t.Helper()
	index := make(map[string]int, len(order))
	for i, id := range order {
		index[id] = i
	}
	seen := map[string]bool{}
	last := map[int32]int{}
	dups := 0
	for _, r := range recs {
		i, ok := index[r.id]
		if !ok {
			t.Fatalf("record %d/%d: unknown event %s", r.partition, r.offset, r.id)
		}
		if seen[r.id] {
			dups++
			continue
		}
		seen[r.id] = true
		if prev, ok := last[r.partition]; ok && i < prev {
			t.Fatalf("partition %d: event %d (%s) first appears after event %d", r.partition, i, r.id, prev)
		}
		last[r.partition] = i
	}
	missing := 0
	for _, id := range order {
		if !seen[id] {
			missing++
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d events never read back", missing, len(order))
	}
	t.Logf("%d events in %d partitions, all read back in order; %d duplicates", len(order), len(last), dups)
}

func TestEveryEventArrivesInOrderDespiteRetriableProduceErrors(t *testing.T) {
	c := newCluster(t, kfake.NumBrokers(3))
	brokers := c.ListenAddrs()
	createTopic(t, brokers, "audit", 3)
	var produces, failed atomic.Int64
	c.ControlKey(int16(kmsg.Produce), func(kr kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if produces.Add(1)%4 != 0 || failed.Load() >= 4 {
			return nil, nil, false
		}
		failed.Add(1)
		req := kr.(*kmsg.ProduceRequest)
		resp := req.ResponseKind().(*kmsg.ProduceResponse)
		for _, rt := range req.Topics {
			st := kmsg.NewProduceResponseTopic()
			st.Topic, st.TopicID = rt.Topic, rt.TopicID
			for _, rp := range rt.Partitions {
				sp := kmsg.NewProduceResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = kerr.NotEnoughReplicas.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	o := newOutput(t, brokers, "audit", 10*time.Second)
	defer o.Close(context.Background())
	batches, order := stream(30)
	retries := sendAll(t, o, batches, nil)
	if failed.Load() == 0 {
		t.Fatal("no produce request was failed: the fault was not injected")
	}
	t.Logf("%d of %d produce requests answered NOT_ENOUGH_REPLICAS; %d Sends retried", failed.Load(), produces.Load(), retries)
	checkAtLeastOnceInOrder(t, readAll(t, brokers, "audit", len(order)), order)
}

func TestEveryEventArrivesInOrderWhilePartitionLeadersMove(t *testing.T) {
	c := newCluster(t, kfake.NumBrokers(3))
	brokers := c.ListenAddrs()
	createTopic(t, brokers, "audit", 3)
	o := newOutput(t, brokers, "audit", 2*time.Second)
	defer o.Close(context.Background())
	batches, order := stream(30)
	moves := 0
	retries := sendAll(t, o, batches, func(i int) {
		if i%5 != 4 {
			return
		}
		for p := range int32(3) {
			to := (c.LeaderFor("audit", p) + 1) % 3
			if err := c.MoveTopicPartition("audit", p, to); err != nil {
				t.Fatalf("move partition %d to node %d: %v", p, to, err)
			}
			moves++
		}
	})
	t.Logf("%d leader moves, %d Sends retried", moves, retries)
	checkAtLeastOnceInOrder(t, readAll(t, brokers, "audit", len(order)), order)
}

// freePorts returns n ports free on 127.0.0.1 now.
func freePorts(t *testing.T, n int) []int {
	var ports []int
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}

func TestEveryEventArrivesInOrderAcrossAClusterRestart(t *testing.T) {
	ports := freePorts(t, 3)
	dir := t.TempDir()
	start := func() *kfake.Cluster {
		c, err := kfake.NewCluster(kfake.NumBrokers(3), kfake.Ports(ports...), kfake.DataDir(dir),
			kfake.ListenFn(func(network, address string) (net.Listener, error) {
				_, port, _ := net.SplitHostPort(address)
				return net.Listen(network, "127.0.0.1:"+port)
			}))
		if err != nil {
			t.Fatalf("start kfake: %v", err)
		}
		return c
	}
	c := start()
	brokers := c.ListenAddrs()
	createTopic(t, brokers, "audit", 3)
	o := newOutput(t, brokers, "audit", time.Second)
	defer o.Close(context.Background())
	batches, order := stream(30)

	var restarted sync.WaitGroup
	var mu sync.Mutex
	retries := sendAll(t, o, batches, func(i int) {
		if i != 9 {
			return
		}
		// Down while the next batches are sent: they time out and are
		// sent again once the cluster is back.
		mu.Lock()
		c.Close()
		mu.Unlock()
		restarted.Go(func() {
			time.Sleep(2 * time.Second)
			mu.Lock()
			c = start()
			mu.Unlock()
		})
	})
	restarted.Wait()
	defer c.Close()
	if retries == 0 {
		t.Fatal("no Send failed while the cluster was down")
	}
	t.Logf("%d Sends retried across the restart", retries)
	checkAtLeastOnceInOrder(t, readAll(t, brokers, "audit", len(order)), order)
}

func TestAnOversizedEventIsCutOrDeadLettered(t *testing.T) {
	c := newCluster(t, kfake.NumBrokers(1))
	brokers := c.ListenAddrs()
	createTopic(t, brokers, "audit", 1)
	o, err := kafka.New(kafka.Options{Brokers: brokers, Topic: "audit", MaxMessageBytes: 8 << 10, Timeout: 5 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close(context.Background())
	big := strings.Repeat("x", 10<<10)
	b := &outputs.Batch{}
	b.Append([]byte(`{"kind":"Event","auditID":"small","stage":"ResponseComplete","verb":"get"}`))
	b.Append([]byte(`{"kind":"Event","auditID":"cut","stage":"ResponseComplete","verb":"get","responseObject":{"data":"` + big + `"}}`))
	b.Append([]byte(`{"kind":"Event","auditID":"huge","stage":"ResponseComplete","verb":"get","requestURI":"/` + big + `"}`))
	b.Append([]byte(`{"kind":"Event","auditID":"fits","stage":"ResponseComplete","verb":"get","requestURI":"/` + strings.Repeat("y", 7<<10) + `"}`))
	b.Parse(nil)
	err = o.Send(context.Background(), b)
	var rej *outputs.RejectedError
	if !errors.As(err, &rej) || !slices.Equal(rej.Lines, []int{2}) {
		t.Fatalf("Send = %v, want line 2 rejected", err)
	}
	recs := readAll(t, brokers, "audit", 3)
	var ids []string
	for _, r := range recs {
		ids = append(ids, r.header)
	}
	if !slices.Equal(ids, []string{"small", "cut", "fits"}) {
		t.Fatalf("read back %v, want small, cut, fits", ids)
	}
	if o.Truncated() != 1 {
		t.Errorf("Truncated = %d, want 1", o.Truncated())
	}
}

func TestAMissingTopicIsNamedAndRetriedLater(t *testing.T) {
	c := newCluster(t, kfake.NumBrokers(1))
	brokers := c.ListenAddrs()
	o := newOutput(t, brokers, "no-such-topic", 30*time.Second)
	defer o.Close(context.Background())
	b, _ := outputstest.NewBatch(1, 3)
	start := time.Now()
	err := o.Send(context.Background(), b)
	t.Logf("missing topic reported after %s", time.Since(start))
	var ra *outputs.RetryAfterError
	if !errors.As(err, &ra) || outputs.IsPermanent(err) {
		t.Fatalf("Send = %v, want a RetryAfterError", err)
	}
	if !strings.Contains(err.Error(), "topic no-such-topic does not exist on brokers "+brokers[0]) {
		t.Errorf("error %q does not name the topic and broker", err)
	}
	if err := o.Check(context.Background()); err == nil || !strings.Contains(err.Error(), "no-such-topic") {
		t.Errorf("Check = %v, want the missing topic named", err)
	}
}

func TestCheckPassesAgainstALiveTopic(t *testing.T) {
	c := newCluster(t, kfake.NumBrokers(1))
	brokers := c.ListenAddrs()
	createTopic(t, brokers, "audit", 1)
	o := newOutput(t, brokers, "audit", 5*time.Second)
	defer o.Close(context.Background())
	if err := o.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func saslOutput(t *testing.T, brokers []string, topic, user, password string) *kafka.Output {
	t.Helper()
	pw := t.TempDir() + "/pw"
	if err := os.WriteFile(pw, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o, err := kafka.New(kafka.Options{Brokers: brokers, Topic: topic, Timeout: 3 * time.Second,
		SASL: kafka.SASLOptions{Mechanism: "scram-sha-512", Username: user, PasswordFile: pw}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close(context.Background()) })
	return o
}

func TestSASLAndAuthorizationFailuresAreNamedAndRetriedLater(t *testing.T) {
	c := newCluster(t, kfake.NumBrokers(1), kfake.EnableSASL(), kfake.EnableACLs(),
		kfake.Superuser("SCRAM-SHA-512", "admin", "admin-pw"),
		kfake.User("SCRAM-SHA-512", "reader", "reader-pw", kfake.ACL{Resource: kmsg.ACLResourceTypeTopic, Name: "audit",
			Pattern: kmsg.ACLResourcePatternTypeLiteral, Operation: kmsg.ACLOperationDescribe, Allow: true}),
		kfake.SeedTopics(1, "audit"))
	brokers := c.ListenAddrs()
	b, _ := outputstest.NewBatch(3, 5)

	// Kafka answers SASL_AUTHENTICATION_FAILED (a RetryAfterError naming
	// SASL); kfake closes the connection, so the timeout says the last
	// error franz-go saw.
	t.Run("a wrong password", func(t *testing.T) {
		err := saslOutput(t, brokers, "audit", "admin", "wrong").Send(context.Background(), b)
		if err == nil || outputs.IsPermanent(err) || !strings.Contains(err.Error(), "last error: ") || !strings.Contains(err.Error(), brokers[0]) {
			t.Fatalf("Send = %v, want a retryable error naming the broker and the last error", err)
		}
		t.Logf("wrong password: %v", err)
		if strings.Contains(err.Error(), "wrong") {
			t.Errorf("the password is in the error: %v", err)
		}
	})
	t.Run("no write permission on the topic", func(t *testing.T) {
		err := saslOutput(t, brokers, "audit", "reader", "reader-pw").Send(context.Background(), b)
		var ra *outputs.RetryAfterError
		if !errors.As(err, &ra) || !strings.Contains(err.Error(), "brokers "+brokers[0]) {
			t.Fatalf("Send = %v, want a RetryAfterError naming the broker", err)
		}
		if !strings.Contains(err.Error(), "topic audit") && !strings.Contains(err.Error(), "IDEMPOTENT_WRITE") {
			t.Errorf("error %q names neither the topic nor the cluster permission", err)
		}
		t.Logf("reader: %v", err)
	})
	t.Run("the superuser delivers", func(t *testing.T) {
		if err := saslOutput(t, brokers, "audit", "admin", "admin-pw").Send(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	})
}
