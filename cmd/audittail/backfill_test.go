package main

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// writtenIDs returns every auditID in the files of dir (plain and .gz).
func writtenIDs(t *testing.T, dir string) []string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "audit*"))
	var ids []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(f, ".gz") {
			zr, err := gzip.NewReader(bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			if data, err = io.ReadAll(zr); err != nil {
				t.Fatal(err)
			}
		}
		for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
			ids = append(ids, auditID(line))
		}
	}
	return ids
}

func outputIDs(t *testing.T, path string) map[string]int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
		seen[auditID(line)]++
	}
	return seen
}

func TestBackfillShipsPlainAndGzippedBackupsAndResumes(t *testing.T) {
	bin := agentBinary(t)
	dir := t.TempDir()
	logDir := filepath.Join(dir, "log")
	live := filepath.Join(logDir, "audit.log")
	gen := func(args ...string) {
		t.Helper()
		cmd := exec.Command(bin, append([]string{"gen", "--path", live, "--rate", "0", "--maxsize", "1", "--maxbackup", "0"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("gen: %v\n%s", err, out)
		}
	}
	// Compressed backups first, then plain ones, then a live file.
	gen("--events", "6000", "--compress", "--seed", "1")
	time.Sleep(300 * time.Millisecond) // lumberjack compresses in the background
	gen("--events", "4500", "--seed", "2")
	gz, _ := filepath.Glob(filepath.Join(logDir, "*.log.gz"))
	plain, _ := filepath.Glob(filepath.Join(logDir, "audit-*.log"))
	if len(gz) == 0 || len(plain) == 0 {
		t.Fatalf("want both gzipped and plain backups, got %d and %d", len(gz), len(plain))
	}
	want := writtenIDs(t, logDir)
	if len(want) != 10500 {
		t.Fatalf("the writer wrote %d events, want 10500", len(want))
	}

	out := filepath.Join(dir, "out", "events.jsonl")
	config := filepath.Join(dir, "config.yaml")
	os.WriteFile(config, []byte(fmt.Sprintf(`state_dir: %s
inputs:
  - path: %s
batch: {max_events: 20}
metrics: {listen: "off"}
outputs:
  - name: copy
    type: file
    path: %s
`, filepath.Join(dir, "state"), live, out)), 0o644)

	// First run, interrupted part way.
	cmd := exec.Command(bin, "backfill", "--config", config)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	interrupted := false
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		if fi, err := os.Stat(out); err == nil && fi.Size() > 0 {
			cmd.Process.Signal(syscall.SIGINT)
			interrupted = true
			break
		}
	}
	err := cmd.Wait()
	if !interrupted {
		t.Fatal("backfill never started writing")
	}
	got := outputIDs(t, out)
	if len(got) >= len(want) {
		t.Skip("backfill finished before it could be interrupted; nothing to resume")
	}
	if err == nil {
		t.Fatalf("an interrupted backfill exited 0; stdout:\n%s", stdout.String())
	}
	if strings.Contains(stderr.String(), "ETA") {
		t.Fatal("progress bar drawn although stderr is not a terminal")
	}

	// Second run resumes and finishes.
	cmd = exec.Command(bin, "backfill", "--config", config)
	stdout.Reset()
	stderr.Reset()
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("resumed backfill: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	if strings.Contains(stderr.String(), "ETA") {
		t.Fatal("progress bar drawn although stderr is not a terminal")
	}
	got = outputIDs(t, out)
	dups := 0
	for _, id := range want {
		switch got[id] {
		case 0:
			t.Fatalf("event %s was never delivered", id)
		case 1:
		default:
			dups += got[id] - 1
		}
	}
	if dups > 20 {
		t.Fatalf("%d duplicates after one interruption: more than one batch (20)", dups)
	}
	// The summary counts what this run read and delivered, exactly.
	m := regexp.MustCompile(`(\d+) files \((\d+) gzipped\), (\d+) events`).FindStringSubmatch(stdout.String())
	if m == nil {
		t.Fatalf("no summary line:\n%s", stdout.String())
	}
	files, _ := filepath.Glob(filepath.Join(logDir, "audit*"))
	if m[1] != fmt.Sprint(len(files)) || m[2] != fmt.Sprint(len(gz)) {
		t.Fatalf("summary says %s files (%s gzipped), want %d (%d)", m[1], m[2], len(files), len(gz))
	}
	delivered := regexp.MustCompile(`output copy: read \d+, delivered (\d+)`).FindStringSubmatch(stdout.String())
	if delivered == nil || delivered[1] != m[3] {
		t.Fatalf("summary: %s events read but %v delivered:\n%s", m[3], delivered, stdout.String())
	}

	// A third run has nothing left to do, and says so.
	cmd = exec.Command(bin, "backfill", "--config", config)
	stdout.Reset()
	cmd.Stdout = &stdout
	if err := cmd.Run(); err != nil {
		t.Fatalf("third run: %v", err)
	}
	if !strings.Contains(stdout.String(), ", 0 events") {
		t.Fatalf("third run read events again:\n%s", stdout.String())
	}
}

func TestBackfillFiltersByStageTimestampAndFailsOnAnUnreachableOutput(t *testing.T) {
	bin := agentBinary(t)
	dir := t.TempDir()
	live := filepath.Join(dir, "audit.log")
	lines := []string{
		`{"kind":"Event","auditID":"old","stageTimestamp":"2026-01-01T00:00:00.000000Z"}`,
		`{"kind":"Event","auditID":"in","stageTimestamp":"2026-06-01T12:00:00.000000Z"}`,
		`{"kind":"Event","auditID":"new","stageTimestamp":"2026-12-01T00:00:00.000000Z"}`,
	}
	os.WriteFile(live, []byte(strings.Join(lines, "\n")+"\n"), 0o644)
	out := filepath.Join(dir, "out.jsonl")
	config := filepath.Join(dir, "config.yaml")
	os.WriteFile(config, []byte(fmt.Sprintf("state_dir: %s\ninputs: [{path: %s}]\nmetrics: {listen: \"off\"}\noutputs: [{name: f, type: file, path: %s}]\n", filepath.Join(dir, "state"), live, out)), 0o644)
	res, err := exec.Command(bin, "backfill", "--config", config, "--since", "2026-05-01T00:00:00Z", "--until", "2026-07-01T00:00:00Z").Output()
	if err != nil {
		t.Fatalf("backfill: %v\n%s", err, res)
	}
	got := outputIDs(t, out)
	if len(got) != 1 || got["in"] != 1 {
		t.Fatalf("delivered %v, want only the event inside the window", got)
	}
	if !strings.Contains(string(res), "filtered out 2") {
		t.Fatalf("summary does not count the filtered events:\n%s", res)
	}

	// An output that cannot be written: the run gives up and exits non-zero.
	blocked := filepath.Join(dir, "blocked")
	os.WriteFile(blocked, nil, 0o644)
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte(fmt.Sprintf("state_dir: %s\ninputs: [{path: %s}]\nmetrics: {listen: \"off\"}\noutputs: [{name: f, type: file, path: %s/x/out.jsonl}]\n", filepath.Join(dir, "state2"), live, blocked)), 0o644)
	cmd := exec.Command(bin, "backfill", "--config", bad, "--give-up-after", "1s")
	res, err = cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("backfill into an unusable output exited 0:\n%s", res)
	}
}

func TestBackfillTakesFlagsAfterPaths(t *testing.T) {
	bin := agentBinary(t)
	dir := t.TempDir()
	live := filepath.Join(dir, "audit.log")
	os.WriteFile(live, []byte(`{"kind":"Event","auditID":"a","stageTimestamp":"2026-06-01T12:00:00.000000Z"}`+"\n"+`{"kind":"Event","auditID":"b","stageTimestamp":"2026-01-01T12:00:00.000000Z"}`+"\n"), 0o644)
	config := filepath.Join(dir, "config.yaml")
	os.WriteFile(config, []byte(fmt.Sprintf("state_dir: %s\ninputs: [{path: /nonexistent/audit.log}]\nmetrics: {listen: \"off\"}\noutputs: [{type: null}]\n", filepath.Join(dir, "state"))), 0o644)
	out, err := exec.Command(bin, "backfill", "--config", config, live, "--since", "2026-05-01T00:00:00Z", "--dry-run").Output()
	if err != nil {
		t.Fatalf("backfill: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "1 files") || !strings.Contains(string(out), "filtered out 1") {
		t.Fatalf("flags after the path were not applied:\n%s", out)
	}
}

func TestBackfillDrawsAProgressBarOnATerminal(t *testing.T) {
	script, err := exec.LookPath("script") // util-linux, in every Debian
	if err != nil {
		t.Fatalf("script(1) is needed to give backfill a terminal: %v", err)
	}
	bin := agentBinary(t)
	dir := t.TempDir()
	live := filepath.Join(dir, "audit.log")
	if out, err := exec.Command(bin, "gen", "--path", live, "--events", "20000", "--rate", "0", "--maxsize", "100", "--seed", "3").CombinedOutput(); err != nil {
		t.Fatalf("gen: %v\n%s", err, out)
	}
	config := filepath.Join(dir, "config.yaml")
	os.WriteFile(config, []byte(fmt.Sprintf("state_dir: %s\ninputs: [{path: %s}]\nmetrics: {listen: \"off\"}\noutputs: [{type: null}]\n", filepath.Join(dir, "state"), live)), 0o644)
	// script runs the command on a pseudo-terminal and copies what it
	// prints, stderr included, to its own stdout.
	out, err := exec.Command(script, "-qec", bin+" backfill --config "+config, "/dev/null").CombinedOutput()
	if err != nil {
		t.Fatalf("backfill on a terminal: %v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("ETA")) || !bytes.Contains(out, []byte("%")) {
		t.Fatalf("no progress bar on a terminal:\n%q", out)
	}
}

func TestBackfillWithTwoOutputsResumesEachOnItsOwn(t *testing.T) {
	bin := agentBinary(t)
	dir := t.TempDir()
	live := filepath.Join(dir, "audit.log")
	if out, err := exec.Command(bin, "gen", "--path", live, "--events", "3000", "--rate", "0", "--seed", "9").CombinedOutput(); err != nil {
		t.Fatalf("gen: %v\n%s", err, out)
	}
	state := filepath.Join(dir, "state")
	one := filepath.Join(dir, "one.yaml")
	two := filepath.Join(dir, "two.yaml")
	os.WriteFile(one, []byte(fmt.Sprintf("state_dir: %s\ninputs: [{path: %s}]\nmetrics: {listen: \"off\"}\noutputs: [{name: a, type: file, path: %s/a.jsonl}]\n", state, live, dir)), 0o644)
	os.WriteFile(two, []byte(fmt.Sprintf("state_dir: %s\ninputs: [{path: %s}]\nmetrics: {listen: \"off\"}\noutputs: [{name: b, type: file, path: %s/b.jsonl}, {name: a, type: file, path: %s/a.jsonl}]\n", state, live, dir, dir)), 0o644)
	if out, err := exec.Command(bin, "backfill", "--config", one).Output(); err != nil {
		t.Fatalf("first backfill: %v\n%s", err, out)
	}
	// Output a is done; b is new: the second run ships everything to b only,
	// and that is a success.
	out, err := exec.Command(bin, "backfill", "--config", two).Output()
	if err != nil {
		t.Fatalf("second backfill (a done, b new) failed: %v\n%s", err, out)
	}
	for _, want := range []string{", 3000 events", "output b: read 3000, delivered 3000", "output a: read 0, delivered 0"} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("summary lacks %q:\n%s", want, out)
		}
	}
}
