package parser

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const (
	notEvent     = "parser: not an audit event: "
	noKindNoID   = `no "kind" and no "auditID"`
	noKind       = `no "kind" (or not a string)`
	isEventList  = `kind is "EventList" (a webhook body: split it with SplitEventList)`
	wrongKind    = `kind is not "Event"`
	noAuditID    = `no "auditID" (or not a string, or empty)`
	passes       = ""
	webhookItem  = `{"level":"Metadata","auditID":"b7699b7e-e876-4c97-9b18-f7e7adc18841","stage":"ResponseComplete","requestURI":"/api/v1/nodes?limit=500","verb":"list"}`
	pascalCase   = `{"Level":"Request","AuditID":"793e7ae2-5ca7-4ad3-a632-19708d2f8265","Stage":"RequestReceived","Verb":"get"}`
	wrappedEvent = `{"records":[{"category":"kube-audit","properties":{"log":"{\"kind\":\"Event\",\"auditID\":\"x\"}"}}]}`
)

// checkCase is one JSON object and what Check and CheckItem say of it.
type checkCase struct {
	name             string
	line             string
	check, checkItem string // passes, or the error after "parser: not an audit event: "
}

func checkCases() []checkCase {
	return []checkCase{
		{"passes a kube-apiserver event", minimal, passes, passes},
		{"passes a v1beta1 event", `{"kind":"Event","apiVersion":"audit.k8s.io/v1beta1","metadata":{"creationTimestamp":"2017-09-11T19:55:05Z"},"level":"Metadata","timestamp":"2017-09-11T19:55:05Z","auditID":"033d17af-082d-4b24-aa22-627752e83d71","stage":"ResponseComplete"}`, passes, passes},
		{"decodes an escaped kind", `{"kind":"Ev\u0065nt","auditID":"a"}`, passes, passes},
		{"passes an auditID that is not a UUID (the Audit-ID header may set it)", `{"kind":"Event","auditID":"req-1"}`, passes, passes},
		{"refuses {}", `{}`, noKindNoID, noAuditID},
		{"refuses an EventList", `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[` + webhookItem + `]}`, isEventList, isEventList},
		{"refuses an escaped EventList", `{"kind":"Event\u004cist","items":[]}`, isEventList, isEventList},
		{"refuses a kind that is not a string", `{"kind": 0}`, noKindNoID, noAuditID},
		{"refuses another kind", `{"kind":"Pod","apiVersion":"v1","auditID":"a"}`, wrongKind, wrongKind},
		{"refuses a lower-case kind", `{"kind":"event","auditID":"a"}`, wrongKind, wrongKind},
		{"refuses a kind with trailing space", `{"kind":"Event ","auditID":"a"}`, wrongKind, wrongKind},
		{"refuses an event without auditID", `{"kind":"Event","stage":"ResponseComplete"}`, noAuditID, noAuditID},
		{"refuses an empty auditID", `{"kind":"Event","auditID":""}`, noAuditID, noAuditID},
		{"refuses a null auditID", `{"kind":"Event","auditID":null}`, noAuditID, noAuditID},
		{"refuses a nested auditID only", `{"kind":"Event","user":{"auditID":"a"}}`, noAuditID, noAuditID},
		{"refuses a line without kind, passes it as a webhook item", webhookItem, noKind, passes},
		{"refuses PascalCase keys (a re-serialized Go struct)", pascalCase, noKindNoID, noAuditID},
		{"refuses a wrapped event (AKS, Event Hubs)", wrappedEvent, noKindNoID, noAuditID},
	}
}

func checkErr(t *testing.T, what, in string, err error, want string) {
	t.Helper()
	if want == passes {
		if err != nil {
			t.Errorf("%s(%s) = %v, want nil", what, in, err)
		}
		return
	}
	if err == nil || !errors.Is(err, ErrNotEvent) || err.Error() != notEvent+want {
		t.Errorf("%s(%s) = %v, want %q wrapping ErrNotEvent", what, in, err, notEvent+want)
	}
}

func TestCheck(t *testing.T) {
	for _, c := range checkCases() {
		t.Run(c.name, func(t *testing.T) {
			var ev Event
			if err := Scan([]byte(c.line), &ev); err != nil {
				t.Fatalf("Scan: %v", err)
			}
			checkErr(t, "Check", c.line, ev.Check(), c.check)
			checkErr(t, "CheckItem", c.line, ev.CheckItem(), c.checkItem)
		})
	}
}

func TestCheckItemsOfAnEventList(t *testing.T) {
	body := `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[` + webhookItem + `,` + minimal + `,{"kind":"Pod","auditID":"x"},{}]}`
	var want = []string{passes, passes, wrongKind, noAuditID}
	var got []error
	if err := SplitEventList([]byte(body), func(item []byte) error {
		var ev Event
		if err := Scan(item, &ev); err != nil {
			return err
		}
		got = append(got, ev.CheckItem())
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d items, want %d", len(got), len(want))
	}
	for i := range want {
		checkErr(t, "CheckItem of item "+strconv.Itoa(i), "", got[i], want[i])
	}
}

func TestCheckDoesNotAllocate(t *testing.T) {
	var evs []Event
	for _, c := range checkCases() {
		var ev Event
		if err := Scan([]byte(c.line), &ev); err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	k := 0
	allocs := testing.AllocsPerRun(500, func() {
		ev := &evs[k%len(evs)]
		ev.Check()
		ev.CheckItem()
		k++
	})
	if allocs != 0 {
		t.Errorf("Check and CheckItem allocate %v times per call, want 0", allocs)
	}
}

// goldenSection is what a golden file records of one input: its heading
// ("line 3", "whole file", "EventList item 1") and string fields.
type goldenSection struct {
	file, heading string
	fields        map[string]string // golden field name -> decoded value
	scanErr       bool
}

// goldenSections reads every section of testdata/golden, the in-repo record
// of what Scan makes of each real audit file.
func goldenSections(t *testing.T) []goldenSection {
	t.Helper()
	files, err := filepath.Glob("testdata/golden/*.golden")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	var out []goldenSection
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(nil, 1<<20)
		var cur *goldenSection
		for sc.Scan() {
			l := sc.Text()
			if h, ok := strings.CutPrefix(l, "## "); ok {
				out = append(out, goldenSection{file: filepath.Base(f), heading: h, fields: map[string]string{}})
				cur = &out[len(out)-1]
				continue
			}
			if cur == nil {
				continue
			}
			if strings.HasPrefix(l, "error: ") {
				cur.scanErr = true
			}
			name, v, ok := strings.Cut(l, ": ")
			if !ok || !strings.HasPrefix(v, `"`) {
				continue
			}
			s, err := strconv.Unquote(v)
			if err != nil {
				t.Fatalf("%s: %q: %v", f, l, err)
			}
			cur.fields[name] = s
		}
		fh.Close()
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// TestCheckPassesEveryRealEvent rebuilds, from the golden files, each real
// object's kind, auditID and other top-level string fields as a JSON line,
// scans it and checks it: every line or document of kind "Event" passes
// Check, every EventList item passes CheckItem, the EventLists and the
// other records (wrapped AKS and GKE records, {"kind": 0}) fail both.
func TestCheckPassesEveryRealEvent(t *testing.T) {
	keys := map[string]string{"Kind": "kind", "APIVersion": "apiVersion", "Level": "level", "AuditID": "auditID", "Stage": "stage", "RequestURI": "requestURI", "Verb": "verb", "UserAgent": "userAgent"}
	var events, items, others int
	for _, s := range goldenSections(t) {
		if s.scanErr || s.heading == "as EventList" {
			continue
		}
		obj := map[string]string{}
		for name, v := range s.fields {
			if k, ok := keys[name]; ok {
				obj[k] = v
			}
		}
		line, err := json.Marshal(obj)
		if err != nil {
			t.Fatal(err)
		}
		var ev Event
		if err := Scan(line, &ev); err != nil {
			t.Fatalf("%s, %s: Scan(%s): %v", s.file, s.heading, line, err)
		}
		where := s.file + ", " + s.heading
		isItem := strings.HasPrefix(s.heading, "EventList item")
		switch {
		case isItem:
			items++
			if err := ev.CheckItem(); err != nil {
				t.Errorf("%s: CheckItem: %v\n%s", where, err, line)
			}
		case s.fields["Kind"] == "Event":
			events++
			if err := ev.Check(); err != nil {
				t.Errorf("%s: Check: %v\n%s", where, err, line)
			}
		default:
			others++
			if err := ev.Check(); !errors.Is(err, ErrNotEvent) {
				t.Errorf("%s: Check = %v, want ErrNotEvent\n%s", where, err, line)
			}
			if err := ev.CheckItem(); !errors.Is(err, ErrNotEvent) {
				t.Errorf("%s: CheckItem = %v, want ErrNotEvent\n%s", where, err, line)
			}
		}
		// Whatever carries an audit stage is an event, and must pass.
		if _, ok := s.fields["Stage"]; ok && !isItem && ev.Check() != nil {
			t.Errorf("%s: has a stage but fails Check: %v", where, ev.Check())
		}
	}
	t.Logf("%d real events, %d EventList items, %d other objects", events, items, others)
	if events < 800 || items < 2 || others < 8 {
		t.Errorf("golden files hold %d events, %d items, %d other objects; want at least 800, 2, 8", events, items, others)
	}
}
