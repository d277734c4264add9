package usage

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParser checks the response parser: it never panics; no count is
// negative; feeding the same body whole, split in two at any byte or one
// byte at a time gives the same Result and the same error; and the JSON it
// accepts is the JSON encoding/json accepts, for bodies that are objects.
// The seeds are the recorded bodies in testdata and, in
// testdata/fuzz/FuzzParser, SSE edge cases (a CR-only stream, a BOM, a CR
// and LF split across chunks) and JSON ones (escaped keys, deep nesting).
func FuzzParser(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.*"))
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, filepath.Ext(name) == ".sse", uint16(len(b)/2))
	}
	f.Fuzz(func(t *testing.T, data []byte, sse bool, split uint16) {
		ct := "application/json"
		if sse {
			ct = "text/event-stream"
		}
		run := func(chunks ...[]byte) (Result, string) {
			p := NewParser(ct)
			for _, c := range chunks {
				if err := p.Write(c); err != nil {
					return p.Result(), err.Error()
				}
			}
			return p.Result(), ""
		}
		whole, werr := run(data)
		if tk := whole.Tokens; tk.Input < 0 || tk.CachedInput < 0 || tk.CacheWrite < 0 || tk.Output < 0 {
			t.Fatalf("negative tokens: %+v", whole)
		}
		at := 0
		if len(data) > 0 {
			at = int(split) % (len(data) + 1)
		}
		if got, err := run(data[:at], data[at:]); got != whole || err != werr {
			t.Fatalf("split at %d: %+v, %q; whole: %+v, %q", at, got, err, whole, werr)
		}
		ones := make([][]byte, len(data))
		for i := range data {
			ones[i] = data[i : i+1]
		}
		if got, err := run(ones...); got != whole || err != werr {
			t.Fatalf("1-byte chunks: %+v, %q; whole: %+v, %q", got, err, whole, werr)
		}
		if trimmed := bytes.TrimLeft(data, " \t\r\n"); len(trimmed) > 0 && trimmed[0] == '{' {
			var sc scanner
			sc.reset(responseTrie)
			err := sc.write(data)
			ok := err == nil && sc.done()
			if valid := json.Valid(data); ok != valid && !errors.Is(err, ErrLimit) {
				t.Fatalf("scanner accepts: %v (%v), encoding/json accepts: %v", ok, err, valid)
			}
		}
	})
}
