package parser

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/golden/*.golden from the current output")

// describe renders what Scan makes of in, with every string field decoded by
// Unquote, for the golden files.
func describe(in []byte) string {
	var ev Event
	if err := Scan(in, &ev); err != nil {
		return "error: " + err.Error() + sentinelName(err) + "\n"
	}
	var b strings.Builder
	str := func(name string, raw []byte) {
		if raw == nil {
			return
		}
		u, err := Unquote(nil, raw)
		if err != nil {
			fmt.Fprintf(&b, "%s: unquote error %v\n", name, err)
			return
		}
		fmt.Fprintf(&b, "%s: %s\n", name, strconv.Quote(string(u)))
	}
	rawf := func(name string, raw []byte) {
		if raw != nil {
			var c bytes.Buffer
			if err := json.Compact(&c, raw); err != nil {
				fmt.Fprintf(&b, "%s: invalid %q: %v\n", name, raw, err)
				return
			}
			fmt.Fprintf(&b, "%s: %s\n", name, c.Bytes())
		}
	}
	str("Kind", ev.Kind)
	str("APIVersion", ev.APIVersion)
	str("Level", ev.Level)
	str("AuditID", ev.AuditID)
	str("Stage", ev.Stage)
	str("RequestURI", ev.RequestURI)
	str("Verb", ev.Verb)
	str("Username", ev.Username)
	rawf("UserGroups", ev.UserGroups)
	str("ImpersonatedUsername", ev.ImpersonatedUsername)
	rawf("SourceIPs", ev.SourceIPs)
	str("UserAgent", ev.UserAgent)
	str("ObjectRef.Resource", ev.ObjectRef.Resource)
	str("ObjectRef.Namespace", ev.ObjectRef.Namespace)
	str("ObjectRef.Name", ev.ObjectRef.Name)
	str("ObjectRef.APIGroup", ev.ObjectRef.APIGroup)
	str("ObjectRef.APIVersion", ev.ObjectRef.APIVersion)
	str("ObjectRef.Subresource", ev.ObjectRef.Subresource)
	if ev.ResponseCode != 0 {
		fmt.Fprintf(&b, "ResponseCode: %d\n", ev.ResponseCode)
	}
	str("RequestReceivedTimestamp", ev.RequestReceivedTimestamp)
	str("StageTimestamp", ev.StageTimestamp)
	rawf("Annotations", ev.Annotations)
	for _, o := range []struct {
		name string
		sp   Span
	}{{"RequestObject", ev.RequestObject}, {"ResponseObject", ev.ResponseObject}} {
		if o.sp.Present() {
			v := o.sp.Value(in)
			fmt.Fprintf(&b, "%s: bytes %d-%d (key at %d), %d bytes starting %.40q\n", o.name, o.sp.Start, o.sp.End, o.sp.Key, len(v), v)
		}
	}
	if b.Len() == 0 {
		return "ok, no audit fields\n"
	}
	return b.String()
}

func sentinelName(err error) string {
	for _, s := range []struct {
		name string
		err  error
	}{{"ErrNotObject", ErrNotObject}, {"ErrTruncated", ErrTruncated}, {"ErrLegacyFormat", ErrLegacyFormat}, {"ErrBOM", ErrBOM}, {"ErrTooDeep", ErrTooDeep}, {"ErrSyntax", ErrSyntax}} {
		if errors.Is(err, s.err) {
			return " [" + s.name + "]"
		}
	}
	return " [no sentinel]"
}

// TestGoldenRealEvents runs Scan over every real file: on each line, on the
// whole file (for pretty-printed single documents), and on each item when
// the file is an EventList. testdata/golden/<file>.golden holds the expected
// result; go test -run TestGoldenRealEvents -update rewrites it.
func TestGoldenRealEvents(t *testing.T) {
	for _, f := range realFiles(t) {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			fmt.Fprintf(&b, "# %s, %d bytes\n", name, len(data))
			lines := bytes.SplitAfter(data, []byte("\n"))
			if len(lines) > 1 {
				for n, l := range lines {
					if len(l) == 0 {
						continue
					}
					fmt.Fprintf(&b, "\n## line %d\n%s", n+1, describe(l))
				}
			}
			fmt.Fprintf(&b, "\n## whole file\n%s", describe(data))
			k := 0
			err = SplitEventList(data, func(item []byte) error {
				k++
				fmt.Fprintf(&b, "\n## EventList item %d\n%s", k, describe(item))
				return nil
			})
			if err != nil {
				fmt.Fprintf(&b, "\n## as EventList\nerror: %v%s\n", err, sentinelName(err))
			} else {
				fmt.Fprintf(&b, "\n## as EventList\n%d items\n", k)
			}
			got := b.String()
			golden := filepath.Join("testdata", "golden", strings.ReplaceAll(name, "@", "_at_")+".golden")
			if *update {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./parser -run TestGoldenRealEvents -update)", err)
			}
			if got != string(want) {
				t.Errorf("output differs from %s; diff it against:\n%s", golden, firstDiff(got, string(want)))
			}
		})
	}
}

func firstDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := 0; i < len(g) || i < len(w); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return fmt.Sprintf("line %d:\n got: %s\nwant: %s", i+1, gl, wl)
		}
	}
	return ""
}
