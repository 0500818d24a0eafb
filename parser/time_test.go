package parser

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// rfc3339Shape is the shape ParseTime claims: within it, it must accept
// exactly what time.Parse(time.RFC3339Nano) accepts; outside it, nothing.
var rfc3339Shape = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$`)

// lenientForm matches what time.Parse(time.RFC3339Nano) accepts outside
// the shape, the differences ParseTime's doc lists: a one-digit hour and a
// comma before the fraction.
var lenientForm = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{1,2}:[0-9]{2}:[0-9]{2}([.,][0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$`)

// timeOracle says what ParseTime must make of b: b is decoded as the body
// of a JSON string by encoding/json (when it has an escape), then parsed by
// time.Parse. want is false when ParseTime must fail. It reports in
// lenient whether time.Parse accepted a form outside the shape.
func timeOracle(b []byte) (want time.Time, ok, lenient bool, err error) {
	s := string(b)
	if strings.IndexByte(s, '\\') >= 0 {
		if json.Unmarshal([]byte(`"`+s+`"`), &s) != nil {
			return time.Time{}, false, false, nil
		}
	}
	t, perr := time.Parse(time.RFC3339Nano, s)
	switch {
	case rfc3339Shape.MatchString(s):
		return t, perr == nil, false, nil
	case perr == nil && !lenientForm.MatchString(s):
		return time.Time{}, false, true, fmt.Errorf("time.Parse accepts %q, outside the shape and not a difference ParseTime documents", s)
	}
	return time.Time{}, false, perr == nil, nil
}

// diffTime describes how ParseTime disagrees with the oracle on b, or "".
func diffTime(b []byte) string {
	got, err := ParseTime(b)
	want, ok, _, oerr := timeOracle(b)
	switch {
	case oerr != nil:
		return oerr.Error()
	case ok && err != nil:
		return fmt.Sprintf("ParseTime fails (%v), time.Parse gives %s", err, want.Format(time.RFC3339Nano))
	case !ok && err == nil:
		return fmt.Sprintf("ParseTime gives %s, want an error", got.Format(time.RFC3339Nano))
	case !ok && !errors.Is(err, ErrTimestamp):
		return fmt.Sprintf("error %v does not wrap ErrTimestamp", err)
	case ok && !got.Equal(want):
		return fmt.Sprintf("ParseTime gives %s, time.Parse %s", got.Format(time.RFC3339Nano), want.Format(time.RFC3339Nano))
	case ok && got.Location() != time.UTC:
		return fmt.Sprintf("ParseTime's time is in %v, want UTC", got.Location())
	}
	return ""
}

// escapeAll writes every byte of s as \u00XX.
func escapeAll(s []byte) []byte {
	var out []byte
	for _, c := range s {
		out = fmt.Appendf(out, `\u%04x`, c)
	}
	return out
}

// realTimestamps returns every requestReceivedTimestamp and stageTimestamp
// of the real events, as the golden files record them (raw, as Scan
// returns them: none has an escape).
func realTimestamps(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob("testdata/golden/*.golden")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	seen := map[string]bool{}
	var out []string
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			name, q, ok := strings.Cut(sc.Text(), ": ")
			if !ok || (name != "RequestReceivedTimestamp" && name != "StageTimestamp") {
				continue
			}
			s, err := strconv.Unquote(q)
			if err != nil {
				t.Fatalf("%s: %q: %v", f, q, err)
			}
			if !seen[s] {
				seen[s] = true
				out = append(out, s)
			}
		}
		fh.Close()
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func TestParseTimeParsesEveryRealTimestamp(t *testing.T) {
	stamps := realTimestamps(t)
	if len(stamps) < 20 {
		t.Fatalf("only %d real timestamps in testdata/golden", len(stamps))
	}
	for _, s := range stamps {
		want, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatalf("time.Parse(%q): %v", s, err)
		}
		got, err := ParseTime([]byte(s))
		if err != nil || !got.Equal(want) {
			t.Errorf("ParseTime(%q) = %v, %v; want %v", s, got, err, want)
		}
		if got, err := ParseTime(escapeAll([]byte(s))); err != nil || !got.Equal(want) {
			t.Errorf("ParseTime(%q escaped) = %v, %v; want %v", s, got, err, want)
		}
	}
}

func TestParseTime(t *testing.T) {
	utc := func(y int, mo time.Month, d, h, mi, s, ns int) time.Time {
		return time.Date(y, mo, d, h, mi, s, ns, time.UTC)
	}
	for _, c := range []struct {
		name string
		in   string
		want time.Time // zero: an error
	}{
		{"reads kube-apiserver's MicroTime", "2026-11-23T10:54:44.671393Z", utc(2026, 11, 23, 10, 54, 44, 671393000)},
		{"reads v1beta1's timestamp without a fraction", "2017-09-11T19:55:05Z", utc(2017, 9, 11, 19, 55, 5, 0)},
		{"reads one fraction digit", "2026-11-23T10:54:44.5Z", utc(2026, 11, 23, 10, 54, 44, 500000000)},
		{"reads nine fraction digits", "2026-11-23T10:54:44.123456789Z", utc(2026, 11, 23, 10, 54, 44, 123456789)},
		{"truncates the digits after the ninth, as time.Parse", "2026-11-23T10:54:44.1234567899999Z", utc(2026, 11, 23, 10, 54, 44, 123456789)},
		{"applies a positive offset", "2026-11-23T16:24:44.671393+05:30", utc(2026, 11, 23, 10, 54, 44, 671393000)},
		{"applies an offset after a short fraction", "2026-11-23T16:24:44.6713+05:30", utc(2026, 11, 23, 10, 54, 44, 671300000)},
		{"applies a negative offset across midnight", "2026-11-22T23:54:44-11:00", utc(2026, 11, 23, 10, 54, 44, 0)},
		{"takes -00:00 as UTC", "2026-11-23T10:54:44-00:00", utc(2026, 11, 23, 10, 54, 44, 0)},
		{"takes an offset of 24 hours, as time.Parse", "2026-11-24T10:54:44+24:00", utc(2026, 11, 23, 10, 54, 44, 0)},
		{"takes an offset of 60 minutes, as time.Parse", "2026-11-23T11:54:44+00:60", utc(2026, 11, 23, 10, 54, 44, 0)},
		{"reads a leap day", "2024-02-29T00:00:00Z", utc(2024, 2, 29, 0, 0, 0, 0)},
		{"reads 2000's leap day", "2000-02-29T00:00:00Z", utc(2000, 2, 29, 0, 0, 0, 0)},
		{"reads year 0", "0000-01-01T00:00:00Z", utc(0, 1, 1, 0, 0, 0, 0)},
		{"reads year 9999", "9999-12-31T23:59:59.999999999Z", utc(9999, 12, 31, 23, 59, 59, 999999999)},
		{"decodes JSON escapes", `2026-11-23T10:54:44.671393\u005a`, utc(2026, 11, 23, 10, 54, 44, 671393000)},
		{"decodes a long escaped fraction", `2026-11-23T10:54:44.` + strings.Repeat(`\u0031`, 30) + `+00:00`, utc(2026, 11, 23, 10, 54, 44, 111111111)},

		{"refuses an empty string", "", time.Time{}},
		{"refuses a date alone", "2026-11-23", time.Time{}},
		{"refuses a time without zone", "2026-11-23T10:54:44.671393", time.Time{}},
		{"refuses a space for T", "2026-11-23 10:54:44Z", time.Time{}},
		{"refuses a lower-case t", "2026-11-23t10:54:44Z", time.Time{}},
		{"refuses a lower-case z", "2026-11-23T10:54:44z", time.Time{}},
		{"refuses a dot without digits", "2026-11-23T10:54:44.Z", time.Time{}},
		{"refuses a comma before the fraction, which time.Parse takes", "2026-11-23T10:54:44,5Z", time.Time{}},
		{"refuses a one-digit hour, which time.Parse takes", "2026-11-23T1:54:44Z", time.Time{}},
		{"refuses month 13", "2026-13-23T10:54:44Z", time.Time{}},
		{"refuses month 0", "2026-00-23T10:54:44Z", time.Time{}},
		{"refuses day 0", "2026-11-00T10:54:44Z", time.Time{}},
		{"refuses November 31st", "2026-11-31T10:54:44Z", time.Time{}},
		{"refuses February 29th of 2023", "2023-02-29T00:00:00Z", time.Time{}},
		{"refuses February 29th of 2100", "2100-02-29T00:00:00Z", time.Time{}},
		{"refuses hour 24", "2026-11-23T24:00:00Z", time.Time{}},
		{"refuses minute 60", "2026-11-23T10:60:44Z", time.Time{}},
		{"refuses a leap second", "2026-12-31T23:59:60Z", time.Time{}},
		{"refuses an offset of 25 hours", "2026-11-23T10:54:44+25:00", time.Time{}},
		{"refuses an offset of 61 minutes", "2026-11-23T10:54:44+00:61", time.Time{}},
		{"refuses an offset without colon", "2026-11-23T10:54:44+0530", time.Time{}},
		{"refuses a short offset", "2026-11-23T10:54:44+05", time.Time{}},
		{"refuses trailing space", "2026-11-23T10:54:44Z ", time.Time{}},
		{"refuses leading space", " 2026-11-23T10:54:44Z", time.Time{}},
		{"refuses a signed year", "+026-11-23T10:54:44Z", time.Time{}},
		{"refuses an invalid escape", `2026-11-23T10:54:44\x`, time.Time{}},
		{"refuses a cut escape", `2026-11-23T10:54:44\u00`, time.Time{}},
		{"refuses an escape of a non-ASCII character", `2026-11-23T10:54:44\u015a`, time.Time{}},
		{"refuses an escaped newline", `2026-11-23T10:54:44Z\n`, time.Time{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseTime([]byte(c.in))
			if c.want.IsZero() {
				if err == nil || !errors.Is(err, ErrTimestamp) {
					t.Fatalf("ParseTime(%q) = %v, %v; want an error wrapping ErrTimestamp", c.in, got, err)
				}
			} else if err != nil || !got.Equal(c.want) || got.Location() != time.UTC {
				t.Fatalf("ParseTime(%q) = %v, %v; want %v", c.in, got, err, c.want)
			}
			if d := diffTime([]byte(c.in)); d != "" {
				t.Errorf("ParseTime(%q) and time.Parse: %s", c.in, d)
			}
			if strings.IndexByte(c.in, '\\') < 0 {
				esc := escapeAll([]byte(c.in))
				if egot, eerr := ParseTime(esc); (eerr == nil) != (err == nil) || !egot.Equal(got) {
					t.Errorf("ParseTime(%q) = %v, %v; the same escaped: %v, %v", c.in, got, err, egot, eerr)
				}
			}
		})
	}
}

func TestParseTimeErrorsSayWhatIsWrong(t *testing.T) {
	for in, want := range map[string]string{
		"2026-13-23T10:54:44Z":      "month out of range",
		"2026-02-30T10:54:44Z":      "day out of range",
		"2026-11-23T24:54:44Z":      "hour out of range",
		"2026-11-23T10:60:44Z":      "minute out of range",
		"2026-11-23T10:54:60Z":      "second out of range",
		"2026-11-23T10:54:44+25:00": "time zone offset out of range",
		"2026-11-23T10:54:44":       "want YYYY-MM-DDTHH:MM:SS[.fraction] then Z or ±hh:mm",
		`2026-11-23T10:54:44\q`:     "invalid JSON escape",
	} {
		_, err := ParseTime([]byte(in))
		if err == nil || err.Error() != "parser: invalid timestamp: "+want || !errors.Is(err, ErrTimestamp) {
			t.Errorf("ParseTime(%q) error %v, want %q wrapping ErrTimestamp", in, err, want)
		}
	}
}

func TestParseTimeDoesNotAllocate(t *testing.T) {
	inputs := [][]byte{
		[]byte("2026-11-23T10:54:44.671393Z"),
		[]byte("2026-11-23T16:24:44.671393+05:30"),
		[]byte(`2026-11-23T10:54:44.671393\u005a`),
		[]byte(`2026-11-23T10:54:44.` + strings.Repeat(`\u0031`, 30) + `Z`),
		[]byte("2026-13-23T10:54:44Z"),
		[]byte("not a time"),
		[]byte(`2026\x`),
	}
	k := 0
	allocs := testing.AllocsPerRun(500, func() {
		ParseTime(inputs[k%len(inputs)])
		k++
	})
	if allocs != 0 {
		t.Errorf("ParseTime allocates %v times per call, want 0", allocs)
	}
}

// timeSeeds are FuzzParseTime's seeds besides the real timestamps.
var timeSeeds = []string{
	"2017-09-11T19:55:05Z",
	"2026-11-23T16:24:44.671393+05:30",
	"2026-11-23T16:24:44.6713+05:30",
	"2026-11-22T23:54:44-11:00",
	"2026-11-24T10:54:44+24:00",
	"2026-11-23T10:54:44,5Z",
	"2026-11-23T1:54:44Z",
	"2024-02-29T00:00:00Z",
	"2026-11-23T10:54:44.1234567899999Z",
	`2026-11-23T10:54:44.671393\u005a`,
	`2026-11-23T10:54:44.` + strings.Repeat(`\u0031`, 12) + `+00:00`,
	"0000-01-01T00:00:00-23:59",
}

func FuzzParseTime(f *testing.F) {
	for _, s := range realTimestamps(f) {
		f.Add([]byte(s))
	}
	for _, s := range timeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if d := diffTime(b); d != "" {
			t.Fatalf("ParseTime(%q): %s", b, d)
		}
		// The same text with every byte escaped means the same.
		got, err := ParseTime(b)
		egot, eerr := ParseTime(escapeAll(b))
		if strings.IndexByte(string(b), '\\') < 0 && ((err == nil) != (eerr == nil) || !got.Equal(egot)) {
			t.Fatalf("ParseTime(%q) = %v, %v but escaped %v, %v", b, got, err, egot, eerr)
		}
	})
}

func BenchmarkParseTime(b *testing.B) {
	for _, c := range []struct{ name, in string }{
		{"MicroTime", "2026-11-23T10:54:44.671393Z"},
		{"offset", "2026-11-23T16:24:44.671393+05:30"},
		{"escaped", `2026-11-23T10:54:44.671393\u005a`},
	} {
		in := []byte(c.in)
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(in)))
			for b.Loop() {
				if _, err := ParseTime(in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("time.Parse/MicroTime", func(b *testing.B) {
		in := []byte("2026-11-23T10:54:44.671393Z")
		b.ReportAllocs()
		b.SetBytes(int64(len(in)))
		for b.Loop() {
			if _, err := time.Parse(time.RFC3339Nano, string(in)); err != nil {
				b.Fatal(err)
			}
		}
	})
}
