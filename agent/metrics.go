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
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

var (
	descReadBytes   = prometheus.NewDesc("audittail_read_bytes_total", "Bytes read from the input's files (decompressed), summed over the outputs' pipelines.", []string{"input"}, nil)
	descEvents      = prometheus.NewDesc("audittail_events_total", "Events by outcome: delivered (acknowledged by the output), dead_lettered (rejected by it, kept in the dead-letter file), dropped (invalid lines, on_parse_error: drop).", []string{"output", "result"}, nil)
	descParseErrors = prometheus.NewDesc("audittail_parse_errors_total", "Lines that are not valid audit events, by reason (oversize and torn lines are skipped; the others are forwarded or dropped per on_parse_error).", []string{"output", "reason"}, nil)
	descBatches     = prometheus.NewDesc("audittail_batches_total", "Send attempts of batches by result (ok, failed).", []string{"output", "result"}, nil)
	descRetries     = prometheus.NewDesc("audittail_retries_total", "Batches sent again after a failure.", []string{"output"}, nil)
	descLag         = prometheus.NewDesc("audittail_checkpoint_lag_bytes", "Bytes written to the inputs' files and not yet acknowledged by the output.", []string{"output"}, nil)
	descLost        = prometheus.NewDesc("audittail_lost_bytes_total", "Bytes deleted by rotation before they were read (at least this many).", []string{"input"}, nil)
	descRotations   = prometheus.NewDesc("audittail_rotations_total", "Moves from one file of the input to the next.", []string{"input"}, nil)
	descLastEvent   = prometheus.NewDesc("audittail_last_event_timestamp_seconds", "stageTimestamp of the newest event the output acknowledged.", []string{"output"}, nil)
	descDeadLetter  = prometheus.NewDesc("audittail_dead_letter_events_total", "Events written to the output's dead-letter file.", []string{"output"}, nil)
	descBuildInfo   = prometheus.NewDesc("audittail_build_info", "Build information.", []string{"version", "goversion"}, nil)
	descReady       = prometheus.NewDesc("audittail_ready", "1 when /readyz reports ready.", nil, nil)
	descCut         = prometheus.NewDesc("audittail_events_cut_total", "Events sent with requestObject/responseObject cut out to fit the output's size limit (line_limit, max_message_bytes).", []string{"output"}, nil)
)

type collector struct{ a *Agent }

// Collector exports the agent's counters to Prometheus. The counters live
// in the pipelines and are read at scrape time.
func (a *Agent) Collector() prometheus.Collector { return collector{a} }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descReadBytes, descEvents, descParseErrors, descBatches, descRetries, descLag, descLost, descRotations, descLastEvent, descDeadLetter, descBuildInfo, descReady, descCut} {
		ch <- d
	}
	for _, p := range c.a.pipelines {
		p.stats.sendSeconds.Describe(ch)
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	type inputTotals struct{ read, lost, rotations int64 }
	inputs := map[string]*inputTotals{}
	for _, in := range c.a.cfg.Inputs {
		inputs[in.Path] = &inputTotals{}
	}
	for _, p := range c.a.pipelines {
		st := p.stats
		counter(descEvents, st.Events.Load(), p.name, "delivered")
		counter(descEvents, st.DeadLettered.Load(), p.name, "dead_lettered")
		counter(descEvents, st.ParseDropped.Load(), p.name, "dropped")
		var oversize, torn int64
		for _, in := range p.inputs {
			t := inputs[in.cfg.Path]
			t.read += in.stats.ReadBytes.Load()
			// Every pipeline sees the same rotations and losses: report them once.
			t.lost = max(t.lost, in.stats.LostBytes.Load())
			t.rotations = max(t.rotations, in.stats.Rotations.Load())
			oversize += in.stats.OversizeLines.Load()
			torn += in.stats.TornLines.Load()
		}
		counter(descParseErrors, oversize, p.name, "oversize")
		counter(descParseErrors, torn, p.name, "torn")
		for i, r := range parseReasons {
			counter(descParseErrors, st.parseErrors[i].Load(), p.name, r)
		}
		counter(descBatches, st.Batches.Load(), p.name, "ok")
		counter(descBatches, st.Failed.Load(), p.name, "failed")
		counter(descRetries, st.Retries.Load(), p.name)
		counter(descDeadLetter, st.DeadLettered.Load(), p.name)
		ch <- prometheus.MustNewConstMetric(descLag, prometheus.GaugeValue, float64(c.a.lag(p)), p.name)
		if t := st.LastEvent(); !t.IsZero() {
			ch <- prometheus.MustNewConstMetric(descLastEvent, prometheus.GaugeValue, float64(t.UnixNano())/1e9, p.name)
		}
		st.sendSeconds.Collect(ch)
		if c, ok := p.out.(interface{ Truncated() int64 }); ok {
			counter(descCut, c.Truncated(), p.name)
		}
	}
	for path, t := range inputs {
		counter(descReadBytes, t.read, path)
		counter(descLost, t.lost, path)
		counter(descRotations, t.rotations, path)
	}
	ch <- prometheus.MustNewConstMetric(descBuildInfo, prometheus.GaugeValue, 1, c.a.opts.Version, runtime.Version())
	ready := 0.0
	if ok, _ := c.a.Ready(); ok {
		ready = 1
	}
	ch <- prometheus.MustNewConstMetric(descReady, prometheus.GaugeValue, ready)
}

// lag estimates the bytes of p's inputs not yet acknowledged: the rest of
// the checkpointed file, the backups queued after it, and the live file.
func (a *Agent) lag(p *pipeline) int64 {
	var total int64
	for _, in := range p.inputs {
		c, ok := a.store.Cursor(p.name, in.cfg.Path)
		live, err := os.Stat(in.cfg.Path)
		var liveSize int64
		var dev, ino uint64
		if err == nil {
			liveSize = live.Size()
			dev, ino = fileID(live)
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

// Ready reports whether every pipeline has its inputs open and its sends
// succeeding (or failing for less than the unready_after budget), and why
// not.
func (a *Agent) Ready() (bool, []string) {
	var why []string
	for _, p := range a.pipelines {
		for _, in := range p.inputs {
			if !in.stats.Open.Load() {
				why = append(why, fmt.Sprintf("output %s: input %s is not open (missing file or directory?)", p.name, in.cfg.Path))
			}
		}
		if d := p.stats.FailingFor(); d > a.cfg.Metrics.UnreadyAfter {
			why = append(why, fmt.Sprintf("output %s: sends failing for %s", p.name, d.Round(time.Second)))
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
