package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite README.md's tables of serve's settings from their declarations")

const readmePath = "../../README.md"

// TestREADMEFlags checks that README.md's tables of serve's settings are
// the ones the code declares. Rewrite them with
//
//	go test ./cmd/keygate -run TestREADMEFlags -update
func TestREADMEFlags(t *testing.T) {
	b, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	for name, table := range settingsTables() {
		begin := fmt.Sprintf("<!-- %s settings: made by go test ./cmd/keygate -run TestREADMEFlags -update -->\n", name)
		end := fmt.Sprintf("<!-- end of %s settings -->", name)
		i, j := strings.Index(readme, begin), strings.Index(readme, end)
		if i < 0 || j < i {
			t.Fatalf("README.md lacks the %q and %q markers", begin, end)
		}
		if got := readme[i+len(begin) : j]; got != table {
			if !*update {
				t.Errorf("README.md's %s settings differ from the code's; run go test ./cmd/keygate -run TestREADMEFlags -update\nREADME:\n%s\ncode:\n%s", name, got, table)
			}
			readme = readme[:i+len(begin)] + table + readme[j:]
		}
	}
	if *update {
		if err := os.WriteFile(readmePath, []byte(readme), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// settingsTables renders serve's settings as Markdown tables: those of the
// store in "store", the others in "serve".
func settingsTables() map[string]string {
	serve, _ := serveFlags(new(Config), io.Discard)
	store := newFlagSet("store", "", io.Discard)
	addStoreFlags(store, new(Config))
	const header = "| flag | env | default | |\n|---|---|---|---|\n"
	tables := map[string]*strings.Builder{"serve": {}, "store": {}}
	for _, tb := range tables {
		tb.WriteString(header)
	}
	serve.VisitAll(func(f *flag.Flag) {
		tb := tables["serve"]
		if store.Lookup(f.Name) != nil {
			tb = tables["store"]
		}
		_, help := flag.UnquoteUsage(f)
		def := ""
		if f.DefValue != "" && f.DefValue != "false" {
			def = "`" + f.DefValue + "`"
		}
		fmt.Fprintf(tb, "| `--%s` | `%s` | %s | %s |\n", f.Name, serve.env[f.Name], def, help)
	})
	for _, s := range secretEnv {
		tb := tables["serve"]
		if strings.HasPrefix(s.name, "KEYGATE_ETCD_") {
			tb = tables["store"]
		}
		fmt.Fprintf(tb, "| | `%s` | | %s (environment only) |\n", s.name, s.help)
	}
	return map[string]string{"serve": tables["serve"].String(), "store": tables["store"].String()}
}
