package file

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeGzip(t *testing.T, path string, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(data)
	zw.Close()
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestTheUncompressedSizeOfAGzipBackupComesFromItsTrailer(t *testing.T) {
	dir := t.TempDir()
	text := []byte(strings.Repeat(`{"kind":"Event","auditID":"x","stage":"ResponseComplete"}`+"\n", 5000))
	random := make([]byte, 200_000)
	rand.Read(random)
	cases := []struct {
		name string
		data []byte
	}{
		{"audit JSON, compressed about 100 to 1", text},
		{"incompressible bytes, a little larger compressed", random},
		{"an empty file", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, "a.gz")
			gz := writeGzip(t, p, tc.data)
			if got := gzipISize(p, int64(len(gz))); got != int64(len(tc.data)) {
				t.Fatalf("uncompressed size %d, want %d (compressed %d)", got, len(tc.data), len(gz))
			}
		})
	}
}

func TestATornGzipFileFallsBackToItsCompressedSize(t *testing.T) {
	dir := t.TempDir()
	// Distinct lines compress about 10 to 1: a cut anywhere leaves 4 bytes
	// of deflate data where the trailer should be.
	var text bytes.Buffer
	for i := range 20000 {
		text.WriteString(`{"kind":"Event","auditID":"`)
		text.WriteString(strings.Repeat(string(rune('a'+i%26)), i%37))
		text.WriteString("\"}\n")
	}
	p := filepath.Join(dir, "a.gz")
	gz := writeGzip(t, p, text.Bytes())
	implausible := 0
	for cut := len(gz) / 4; cut < len(gz)-8; cut += len(gz) / 64 {
		if err := os.WriteFile(p, gz[:cut], 0o644); err != nil {
			t.Fatal(err)
		}
		got := gzipISize(p, int64(cut))
		if got > int64(text.Len()) {
			// A random trailer that happens to look plausible: rare, and
			// must still not exceed deflate's bound.
			if got > int64(cut)*1032 {
				t.Fatalf("cut at %d: size %d beyond deflate's bound", cut, got)
			}
			implausible++
		}
	}
	if implausible > 3 {
		t.Fatalf("%d of 48 torn files reported a size larger than the whole file's", implausible)
	}
}

func TestPlausibleISize(t *testing.T) {
	cases := []struct {
		name        string
		isize, size int64
		want        int64
	}{
		{"ten to one is kept", 10_000, 1_000, 10_000},
		{"stored blocks make a file slightly larger than its content", 65_535, 65_535 + 18 + 5, 65_535},
		{"smaller than deflate allows is not a trailer", 100, 1_000, 1_000},
		{"more than 1032 to 1 is not a trailer", 2_000_000, 1_000, 1_000},
		{"a tiny file", 0, 20, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := plausibleISize(tc.isize, tc.size); got != tc.want {
				t.Fatalf("plausibleISize(%d, %d) = %d, want %d", tc.isize, tc.size, got, tc.want)
			}
		})
	}
}
