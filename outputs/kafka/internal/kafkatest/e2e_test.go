package kafkatest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/audittail/audittail/internal/e2etest"
)

func TestEndToEndThroughTheBinaryWithAKillMidRun(t *testing.T) {
	c := newCluster(t)
	brokers := c.ListenAddrs()
	createTopic(t, brokers, "audit", 3)

	// Consume in the background: auditID/stage -> times read.
	var mu sync.Mutex
	got := map[string]int{}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics("audit"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
				rec := decode(t, r)
				mu.Lock()
				got[rec.id]++
				mu.Unlock()
			})
		}
	}()
	defer func() { cancel(); <-done; cl.Close() }()
	e2etest.KillMidRun(t, fmt.Sprintf("  - type: kafka\n    brokers: [%s]\n    topic: audit\n", strings.Join(brokers, ", ")), func() map[string]int {
		mu.Lock()
		defer mu.Unlock()
		out := make(map[string]int, len(got))
		for id, n := range got {
			out[id] = n
		}
		return out
	})
}
