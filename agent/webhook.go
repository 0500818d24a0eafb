package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/audittail/audittail/source"
	"github.com/audittail/audittail/source/webhook"
)

// webhookInput is what a webhook input has besides a file input's
// counters: its spool, the handler appending to it, and its listener.
type webhookInput struct {
	spool   *webhook.Spool
	handler *webhook.Handler
	ln      net.Listener
	srv     *http.Server
	served  chan struct{} // closed when Serve returned
}

// webhookSetup reads what a webhook input's listener needs: its token,
// certificate and client CA (nil TLS config: insecure).
func webhookSetup(ic InputConfig) (webhook.HandlerConfig, *tls.Config, error) {
	hc := webhook.HandlerConfig{Path: ic.Path, MaxBodyBytes: int64(ic.MaxBodyBytes)}
	if f := ic.Auth.BearerTokenFile; f != "" {
		tok, err := os.ReadFile(f)
		if err != nil {
			return hc, nil, fmt.Errorf("auth.bearer_token_file: %w", err)
		}
		if hc.Token = bytes.TrimSpace(tok); len(hc.Token) == 0 {
			return hc, nil, fmt.Errorf("auth.bearer_token_file %s is empty", f)
		}
	}
	if ic.Insecure {
		return hc, nil, nil
	}
	cert, err := tls.LoadX509KeyPair(ic.TLS.CertFile, ic.TLS.KeyFile)
	if err != nil {
		return hc, nil, fmt.Errorf("tls: %w", err)
	}
	tlsConfig := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if f := ic.TLS.ClientCAFile; f != "" {
		pem, err := os.ReadFile(f)
		if err != nil {
			return hc, nil, fmt.Errorf("tls.client_ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return hc, nil, fmt.Errorf("tls.client_ca_file %s holds no PEM certificate", f)
		}
		// Verified if given; the handler answers 401 without one, so that
		// the client hears why rather than a failed handshake.
		tlsConfig.ClientAuth, tlsConfig.ClientCAs = tls.VerifyClientCertIfGiven, pool
		hc.ClientCert = true
	}
	return hc, tlsConfig, nil
}

// CheckWebhookInput reads a webhook input's token, certificate, key and
// client CA as the agent would at start (audittail validate), and
// describes how it listens.
func CheckWebhookInput(ic InputConfig) (string, error) {
	hc, tlsConfig, err := webhookSetup(ic)
	if err != nil {
		return "", err
	}
	scheme, auth := "https", []string{}
	if tlsConfig == nil {
		scheme = "http (insecure: plain HTTP)"
	}
	if len(hc.Token) > 0 {
		auth = append(auth, "bearer token")
	}
	if hc.ClientCert {
		auth = append(auth, "client certificate")
	}
	if len(auth) == 0 {
		auth = append(auth, "NONE: anyone who can reach it can write events")
	}
	return fmt.Sprintf("listen %s, path %s, %s, auth: %s, spool %s (max %d bytes)", ic.Listen, ic.Path, scheme, strings.Join(auth, " and "), ic.Spool.Dir, int64(ic.Spool.MaxBytes)), nil
}

// openWebhook opens in's spool and listener (the port is bound in New, so
// that a port in use is a start-up error). On error nothing is left open.
func (a *Agent) openWebhook(in *input) (err error) {
	ic := in.cfg
	hc, tlsConfig, err := webhookSetup(ic)
	if err != nil {
		return fmt.Errorf("input %s: %w", in.key, err)
	}
	hc.Log = in.log
	spool, err := webhook.OpenSpool(ic.Spool.Dir, int64(ic.Spool.MaxBytes), in.log)
	if err != nil {
		return fmt.Errorf("input %s: %w", in.key, err)
	}
	defer func() {
		if err != nil {
			spool.Close()
		}
	}()
	ln, err := net.Listen("tcp", ic.Listen)
	if err != nil {
		return fmt.Errorf("input %s: %w", in.key, err)
	}
	if tlsConfig != nil {
		ln = tls.NewListener(ln, tlsConfig)
	}
	h := webhook.NewHandler(hc, spool)
	in.hook = &webhookInput{
		spool: spool, handler: h, ln: ln, served: make(chan struct{}),
		srv: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       2 * time.Minute, // a 12 MiB body over a slow link
			IdleTimeout:       2 * time.Minute,
			ErrorLog:          log.New(slogWriter{log: in.log, limiter: &logLimiter{}}, "", 0),
		},
	}
	switch {
	case ic.Insecure:
		in.log.Warn("the webhook input serves plain HTTP (insecure: true): tokens and audit events cross the network in clear; use it only behind a TLS-terminating proxy or on localhost", "listen", ln.Addr().String())
	}
	if len(hc.Token) == 0 && !hc.ClientCert {
		in.log.Warn("the webhook input has no auth.bearer_token_file and no tls.client_ca_file: anyone who can reach it can write audit events", "listen", ln.Addr().String())
	}
	in.open = func(pos json.RawMessage, pool int, cutAt source.Position) (reader, error) {
		return spool.Open(webhook.ReaderConfig{
			MaxEvents: a.cfg.Batch.MaxEvents, MaxBytes: int(a.cfg.Batch.MaxBytes), MaxWait: a.cfg.Batch.MaxWait,
			Pool: pool, CutAt: cutAt, Log: in.log, Stats: in.stats, Now: a.opts.Now,
		}, pos)
	}
	return nil
}

// serve answers webhook requests until stopWebhook.
func (w *webhookInput) serve(log *slog.Logger) {
	defer close(w.served)
	log.Info("receiving kube-apiserver's audit webhook", "listen", w.ln.Addr().String())
	if err := w.srv.Serve(w.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("the webhook listener failed", "error", err)
	}
}

// stop answers 503 from now on, and waits (until ctx is done) for the
// requests being spooled to be answered.
func (w *webhookInput) stop(ctx context.Context) {
	w.handler.Close()
	if err := w.srv.Shutdown(ctx); err != nil {
		w.srv.Close()
	}
}

// close closes the listener (if it never served) and the spool.
func (w *webhookInput) close() error {
	w.srv.Close()
	w.ln.Close()
	return w.spool.Close()
}

// Addr returns the address webhook input i listens on (tests: listen
// on port 0).
func (a *Agent) Addr(i int) net.Addr {
	if in := a.inputs[i]; in.hook != nil {
		return in.hook.ln.Addr()
	}
	return nil
}

// trimPoints returns, per webhook input, the lowest offset every output
// has committed, as the checkpoint about to be fsynced holds it. An input
// one of whose outputs has no position in its spool yet is left out.
func (a *Agent) trimPoints() map[*input]int64 {
	var points map[*input]int64
next:
	for _, in := range a.inputs {
		if in.hook == nil {
			continue
		}
		low := int64(-1)
		for _, o := range a.outputs {
			id, off, err := webhook.Offset(a.store.Position(o.name, in.key))
			if err != nil || id != in.hook.spool.ID() {
				continue next
			}
			if low < 0 || off < low {
				low = off
			}
		}
		if low >= 0 {
			if points == nil {
				points = map[*input]int64{}
			}
			points[in] = low
		}
	}
	return points
}

// trim deletes the spool segments every output is past (points from
// trimPoints, taken before the checkpoint was fsynced).
func (a *Agent) trim(points map[*input]int64) {
	for in, off := range points {
		if err := in.hook.spool.Trim(off); err != nil {
			in.log.Error("cannot delete spool segments every output has read", "error", err)
		}
	}
}

// slogWriter makes net/http's error log (TLS handshake errors: a client
// without the CA, a port scanner) a warning, at most one every 10s.
type slogWriter struct {
	log     *slog.Logger
	limiter *logLimiter
}

func (w slogWriter) Write(p []byte) (int, error) {
	msg := string(bytes.TrimSpace(p))
	w.limiter.log("listener", func(suppressed int) {
		w.log.Warn("webhook listener: a connection failed", "error", msg, "similar_suppressed", suppressed)
	})
	return len(p), nil
}
