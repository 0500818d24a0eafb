package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/audittail/audittail/source/file"
	"github.com/audittail/audittail/source/webhook"
)

var (
	descReadBytes       = prometheus.NewDesc("audittail_read_bytes_total", "Bytes read from the input's files (decompressed): once for all outputs, plus what outputs behind the shared reader read again on their own.", []string{"input"}, nil)
	descEvents          = prometheus.NewDesc("audittail_events_total", "Events by outcome: delivered (acknowledged by the output), dead_lettered (rejected by it, kept in the dead-letter file), dropped (invalid lines, on_parse_error: drop).", []string{"output", "result"}, nil)
	descParseErrors     = prometheus.NewDesc("audittail_parse_errors_total", "Lines that are not valid audit events, by reason (oversize and torn lines are skipped; the others are forwarded or dropped per on_parse_error).", []string{"output", "reason"}, nil)
	descBatches         = prometheus.NewDesc("audittail_batches_total", "Send attempts of batches by result (ok, failed).", []string{"output", "result"}, nil)
	descRetries         = prometheus.NewDesc("audittail_retries_total", "Batches sent again after a failure.", []string{"output"}, nil)
	descLag             = prometheus.NewDesc("audittail_checkpoint_lag_bytes", "Bytes written to the inputs' files and not yet acknowledged by the output.", []string{"output"}, nil)
	descLost            = prometheus.NewDesc("audittail_lost_bytes_total", "Bytes deleted by rotation before they were read, or left in a corrupt backup: uncompressed, and a lower bound (backups deleted while the agent was down are not counted; see lost_window_seconds_total).", []string{"input"}, nil)
	descLostWindow      = prometheus.NewDesc("audittail_lost_window_seconds_total", "Seconds of stageTimestamp spanned by data lost: from the last event read before each gap to the first after it.", []string{"input"}, nil)
	descLostFiles       = prometheus.NewDesc("audittail_lost_files_total", "Files deleted (wholly or partly) before they were read.", []string{"input"}, nil)
	descCheckpointFails = prometheus.NewDesc("audittail_checkpoint_failures_total", "Checkpoint writes that failed (a full disk, a read-only state_dir); delivery goes on, a crash would re-send more.", nil, nil)
	descCatchUp         = prometheus.NewDesc("audittail_catchup_chunks_total", "Chunks an output read on a reader of its own while it was behind the shared input.", []string{"output"}, nil)
	descRotations       = prometheus.NewDesc("audittail_rotations_total", "Moves from one file of the input to the next.", []string{"input"}, nil)
	descLastEvent       = prometheus.NewDesc("audittail_last_event_timestamp_seconds", "stageTimestamp of the newest event the output acknowledged.", []string{"output"}, nil)
	descDeadLetter      = prometheus.NewDesc("audittail_dead_letter_events_total", "Events written to the output's dead-letter file.", []string{"output"}, nil)
	descBuildInfo       = prometheus.NewDesc("audittail_build_info", "Build information.", []string{"version", "goversion"}, nil)
	descReady           = prometheus.NewDesc("audittail_ready", "1 when /readyz reports ready.", nil, nil)
	descHookRequests    = prometheus.NewDesc("audittail_webhook_requests_total", "Webhook requests by the status code answered (200: spooled and fsynced; 429: spool full; 503: shutting down; 400, 401, 404, 405, 413, 415: refused, nothing kept; 500: the spool could not be written).", []string{"input", "code"}, nil)
	descHookEvents      = prometheus.NewDesc("audittail_webhook_events_total", "Events received by the webhook input: spooled, fsynced and acknowledged with 200.", []string{"input"}, nil)
	descSpoolBytes      = prometheus.NewDesc("audittail_spool_bytes", "Bytes in the webhook input's spool (not yet read past by every output).", []string{"input"}, nil)
	descSpoolSegments   = prometheus.NewDesc("audittail_spool_segments", "Segment files in the webhook input's spool.", []string{"input"}, nil)
	descSpoolFsync      = prometheus.NewDesc("audittail_spool_fsync_seconds", "Duration of the spool's fsyncs (one per group of concurrent requests), which every 200 waits for.", []string{"input"}, nil)
	descOldestUnacked   = prometheus.NewDesc("audittail_oldest_unacknowledged_seconds", "Age of the oldest spooled event the output has not acknowledged (0: none); after a restart a lower bound.", []string{"output", "input"}, nil)
	descPolicyFiltered  = prometheus.NewDesc("audittail_events_filtered_total", "Events the output's policy_file or redact dropped (action drop: level None or an omitted stage) or rewrote (action rewrite: a lower level, managedFields omitted, fields masked), by the policy rule that matched (none: no rule, or redaction only).", []string{"output", "rule_index", "action"}, nil)
	descPolicySaved     = prometheus.NewDesc("audittail_filtered_bytes_saved_total", "Bytes not shipped thanks to the output's policy_file and redact.", []string{"output"}, nil)
	descSinkRejected    = prometheus.NewDesc("audittail_sink_rejected_events_total", "Events a sink acknowledged while saying it rejected them, without naming which (OTLP partial_success): not re-sent, not dead-lettered.", []string{"output"}, nil)
	descAlreadyStored   = prometheus.NewDesc("audittail_events_already_stored_total", "Events the sink answered it already held (Elasticsearch 409 for a re-sent _id): counted as delivered, not stored twice.", []string{"output"}, nil)
	descCut             = prometheus.NewDesc("audittail_events_cut_total", "Events sent with requestObject/responseObject cut out to fit the output's size limit (line_limit, max_message_bytes).", []string{"output"}, nil)
)

type collector struct{ a *Agent }

// Collector exports the agent's counters to Prometheus. The counters live
// in the inputs, outputs and streams and are read at scrape time; no read
// waits on a send.
func (a *Agent) Collector() prometheus.Collector { return collector{a} }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descReadBytes, descEvents, descParseErrors, descBatches, descRetries, descLag, descLost, descLostWindow, descLostFiles, descRotations, descLastEvent, descDeadLetter, descBuildInfo, descReady, descCut, descAlreadyStored, descCheckpointFails, descCatchUp, descSinkRejected, descPolicyFiltered, descPolicySaved, descHookRequests, descHookEvents, descSpoolBytes, descSpoolSegments, descSpoolFsync, descOldestUnacked} {
		ch <- d
	}
	for _, o := range c.a.outputs {
		o.stats.sendSeconds.Describe(ch)
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	a := c.a
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	var oversize, torn int64
	for _, in := range a.inputs {
		st := in.stats
		counter(descReadBytes, st.ReadBytes.Load(), in.key)
		counter(descLost, st.LostBytes.Load(), in.key)
		counter(descLostFiles, st.LostFiles.Load(), in.key)
		ch <- prometheus.MustNewConstMetric(descLostWindow, prometheus.CounterValue, time.Duration(st.LostWindowNanos.Load()).Seconds(), in.key)
		counter(descRotations, st.Rotations.Load(), in.key)
		oversize += st.OversizeLines.Load()
		torn += st.TornLines.Load()
	}
	for _, o := range a.outputs {
		st := o.stats
		counter(descEvents, st.Events.Load(), o.name, "delivered")
		counter(descEvents, st.DeadLettered.Load(), o.name, "dead_lettered")
		counter(descEvents, st.ParseDropped.Load(), o.name, "dropped")
		// Oversize and torn lines are skipped by the reader, before any
		// output: every output misses them.
		counter(descParseErrors, oversize, o.name, "oversize")
		counter(descParseErrors, torn, o.name, "torn")
		for i, r := range parseReasons {
			counter(descParseErrors, st.parseErrors[i].Load(), o.name, r)
		}
		counter(descBatches, st.Batches.Load(), o.name, "ok")
		counter(descBatches, st.Failed.Load(), o.name, "failed")
		counter(descRetries, st.Retries.Load(), o.name)
		counter(descDeadLetter, st.DeadLettered.Load(), o.name)
		ch <- prometheus.MustNewConstMetric(descLag, prometheus.GaugeValue, float64(a.lag(o)), o.name)
		if t := st.LastEvent(); !t.IsZero() {
			ch <- prometheus.MustNewConstMetric(descLastEvent, prometheus.GaugeValue, float64(t.UnixNano())/1e9, o.name)
		}
		st.sendSeconds.Collect(ch)
		if c, ok := o.out.(interface{ Truncated() int64 }); ok {
			counter(descCut, c.Truncated(), o.name)
		}
		if c, ok := o.out.(interface{ Duplicates() int64 }); ok {
			counter(descAlreadyStored, c.Duplicates(), o.name)
		}
		if o.policy.active() {
			counts, saved := o.policyStats.snapshot()
			for k, n := range counts {
				counter(descPolicyFiltered, n, o.name, k.rule, k.action)
			}
			counter(descPolicySaved, saved, o.name)
		}
		if r, ok := o.out.(interface{ Rejected() int64 }); ok {
			counter(descSinkRejected, r.Rejected(), o.name)
		}
		var own int64
		for _, s := range a.streams {
			if s.out == o {
				own += s.ownReads.Load()
			}
		}
		counter(descCatchUp, own, o.name)
	}
	counter(descCheckpointFails, a.checkpointFails.Load())
	a.collectWebhooks(ch)
	ch <- prometheus.MustNewConstMetric(descBuildInfo, prometheus.GaugeValue, 1, a.opts.Version, runtime.Version())
	ready := 0.0
	if ok, _ := a.Ready(); ok {
		ready = 1
	}
	ch <- prometheus.MustNewConstMetric(descReady, prometheus.GaugeValue, ready)
}

// lag estimates the bytes of o's inputs not yet acknowledged: the rest of
// the checkpointed file, the backups queued after it, and the live file.
func (a *Agent) lag(o *output) int64 {
	var total int64
	for _, in := range a.inputs {
		if in.hook != nil {
			// The spool's bytes after the output's position.
			sp := in.hook.spool
			id, off, err := webhook.Offset(a.store.Position(o.name, in.key))
			if err != nil || id != sp.ID() {
				total += sp.Bytes()
			} else {
				total += max(0, sp.Synced()-off)
			}
			continue
		}
		if in.cfg.Type == InputWebhook {
			continue
		}
		c, err := file.DecodePosition(a.store.Position(o.name, in.key))
		ok := err == nil && c.Path != ""
		live, err := os.Stat(in.cfg.Path)
		var liveSize int64
		var dev, ino uint64
		if err == nil {
			liveSize = live.Size()
			dev, ino = file.ID(live)
		}
		switch {
		case !ok:
			total += liveSize
		case c.Dev == dev && c.Ino == ino:
			total += max(0, liveSize-c.Offset)
		default:
			total += max(0, c.Size-c.Offset) + liveSize
			for _, f := range c.Pending {
				total += f.Size
			}
		}
	}
	return total
}

// Ready reports whether every input is open and every output's sends
// succeed (or fail for less than the unready_after budget), and why not.
func (a *Agent) Ready() (bool, []string) {
	var why []string
	for _, in := range a.inputs {
		if !in.stats.Open.Load() {
			why = append(why, fmt.Sprintf("input %s is not open (missing file or directory?)", in.key))
		}
	}
	for _, o := range a.outputs {
		if d := o.stats.FailingFor(); d > a.cfg.Metrics.UnreadyAfter {
			why = append(why, fmt.Sprintf("output %s: sends failing for %s", o.name, d.Round(time.Second)))
		}
	}
	return len(why) == 0, why
}

// Serve runs the metrics and health endpoints until ctx is done:
// /metrics (Prometheus), /healthz (the process is alive), /readyz (Ready).
func (a *Agent) Serve(ctx context.Context, ln net.Listener, reg *prometheus.Registry) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		ok, why := a.Ready()
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "not ready:\n"+strings.Join(why, "\n"))
			return
		}
		fmt.Fprintln(w, "ready")
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// ListenMetrics opens the metrics listener, or returns nil when metrics
// are off.
func ListenMetrics(cfg MetricsConfig, log *slog.Logger) (net.Listener, error) {
	if cfg.Listen == "off" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("metrics.listen: cannot listen on %s: %w", cfg.Listen, err)
	}
	log.Info("serving /metrics, /healthz and /readyz", "address", ln.Addr().String())
	return ln, nil
}

func (a *Agent) collectWebhooks(ch chan<- prometheus.Metric) {
	now := time.Now()
	for _, in := range a.inputs {
		w := in.hook
		if w == nil {
			continue
		}
		for _, code := range webhook.Codes {
			ch <- prometheus.MustNewConstMetric(descHookRequests, prometheus.CounterValue, float64(w.handler.Stats.Requests(code)), in.key, strconv.Itoa(code))
		}
		ch <- prometheus.MustNewConstMetric(descHookEvents, prometheus.CounterValue, float64(w.handler.Stats.Events.Load()), in.key)
		ch <- prometheus.MustNewConstMetric(descSpoolBytes, prometheus.GaugeValue, float64(w.spool.Bytes()), in.key)
		ch <- prometheus.MustNewConstMetric(descSpoolSegments, prometheus.GaugeValue, float64(w.spool.Segments()), in.key)
		buckets, count, sum := w.spool.Stats.FsyncNanos.Snapshot()
		ch <- prometheus.MustNewConstHistogram(descSpoolFsync, count, sum, buckets, in.key)
		for _, o := range a.outputs {
			var age time.Duration
			if id, off, err := webhook.Offset(a.store.Position(o.name, in.key)); err == nil && id == w.spool.ID() {
				age = w.spool.OldestAge(off, now)
			} else if w.spool.Bytes() > 0 {
				age = w.spool.OldestAge(0, now)
			}
			ch <- prometheus.MustNewConstMetric(descOldestUnacked, prometheus.GaugeValue, age.Seconds(), o.name, in.key)
		}
	}
}
