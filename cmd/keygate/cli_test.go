package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keygate/keygate/authz"
)

// TestCLIErrors runs the built binary as a newcomer would, mistakes
// included, and checks the exit code and what it prints.
func TestCLIErrors(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin, err := keygateBinary()
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, filepath.Join(t.TempDir(), "keygate.db"))
	const noAccount = "acct_00000000000000000000000000"
	acct := s.cli("account", "create", "--name", "Acme")
	acctID := fieldIn(t, acct, "ID:")
	tmp := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(tmp, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	secret := authz.NewSecret()
	unbound := filepath.Join(tmp, "unbound", "keygate.db")
	if err := os.Mkdir(filepath.Dir(unbound), 0o700); err != nil {
		t.Fatal(err)
	}
	server := []string{"KEYGATE_ADMIN_URL=http://" + s.admin, "KEYGATE_DB=" + s.db}

	for _, tc := range []struct {
		name    string
		args    []string
		env     []string // added to an environment without KEYGATE_ variables
		dir     string   // working directory; the test's when empty
		code    int
		stdout  []string // each printed on standard output
		stderr  []string // each printed on standard error
		notWant []string // printed on neither
		after   func(t *testing.T)
	}{
		{name: "help help", args: []string{"help", "help"}, stdout: []string{"Usage:"}},
		{name: "help --help", args: []string{"help", "--help"}, stdout: []string{"Usage:"}},
		{name: "help -h", args: []string{"help", "-h"}, stdout: []string{"Usage:"}},
		{name: "--help --help", args: []string{"--help", "--help"}, stdout: []string{"Usage:"}},
		{name: "help of a command", args: []string{"help", "serve"}, stdout: []string{"--store", "KEYGATE_STORE", "etcd"}, notWant: []string{"embedded bbolt"}},
		{name: "help of nothing", args: []string{"help", "nope"}, code: 2, stderr: []string{`no help for "nope"`}},
		{name: "version", args: []string{"version"}, stdout: []string{"keygate ", "commit ", "go1."}},
		{name: "--version", args: []string{"--version"}, stdout: []string{"commit "}},
		{name: "version with an argument", args: []string{"version", "x"}, code: 2, stderr: []string{"version takes no arguments"}},

		{name: "credit without --amount", args: []string{"account", "credit", acctID}, env: server, code: 2, stderr: []string{"--amount is required"}},
		{name: "account create without --name", args: []string{"account", "create"}, env: server, code: 2, stderr: []string{"--name is required"}},
		{name: "key create without --name", args: []string{"key", "create", acctID}, env: server, code: 2, stderr: []string{"--name is required"}},
		{name: "unknown account", args: []string{"account", "get", noAccount}, env: server, code: 1, stderr: []string{"keygate: not_found (HTTP 404)"}, notWant: []string{"keygate admin:"}},
		{name: "malformed id", args: []string{"account", "get", "nope"}, env: server, code: 1, stderr: []string{"not an account id"}},
		{name: "negative balance", args: []string{"account", "create", "--balance", "-5", "--name", "x"}, env: server, code: 1, stderr: []string{"balance"}},
		{name: "missing argument", args: []string{"account", "get"}, env: server, code: 2, stderr: []string{"account get: missing account"}},
		{name: "extra argument", args: []string{"account", "list", "extra"}, env: server, code: 2, stderr: []string{"account list takes no arguments"}},
		{name: "unknown command", args: []string{"account", "frobnicate"}, env: server, code: 2, stderr: []string{"unknown command"}},
		{name: "bad flag value", args: []string{"account", "credit", acctID, "--amount", "abc"}, env: server, code: 2,
			stderr: []string{`invalid value "abc" for flag -amount`, `Run "keygate account credit --help"`}, notWant: []string{"Flags:", "Usage:"}},
		{name: "--expires in words", args: []string{"key", "create", acctID, "--name", "x", "--expires", "tomorrow"}, env: server, code: 2, stderr: []string{"RFC 3339", "30d"}},
		{name: "--expires in days", args: []string{"key", "create", acctID, "--name", "x", "--expires", "30d"}, env: server, stdout: []string{"Expires:", "Secret"}},
		{name: "stable JSON", args: []string{"account", "get", acctID, "-o", "json"}, env: server, stdout: []string{`"name": "Acme"`}, notWant: []string{":  "}},
		{name: "wrong token", args: []string{"account", "list"}, env: append([]string{"KEYGATE_ADMIN_TOKEN=wrong"}, server...), code: 1, stderr: []string{"token"}},

		{name: "server down", args: []string{"account", "list", "--admin-url", "http://127.0.0.1:1"}, env: []string{"KEYGATE_ADMIN_TOKEN=x"}, code: 1,
			stderr: []string{"connection refused", "keygate serve", "--admin-url"}},
		{name: "--admin-url at the gRPC port", args: []string{"account", "list", "--admin-url", "http://" + s.grpcAddr}, env: []string{"KEYGATE_ADMIN_TOKEN=x"}, code: 1,
			stderr: []string{"HTTP/2", "--admin-addr"}, notWant: []string{`\x00`, "malformed"}},
		{name: "no token here", args: []string{"account", "list"}, env: []string{"KEYGATE_ADMIN_URL=http://" + s.admin}, dir: tmp, code: 1,
			stderr: []string{"--db", "--admin-token-file", "KEYGATE_ADMIN_TOKEN"}},
		{name: "token found by --db from elsewhere", args: []string{"account", "list", "--db", s.db}, env: []string{"KEYGATE_ADMIN_URL=http://" + s.admin}, dir: tmp, stdout: []string{"Acme"}},

		{name: "serve with an argument", args: []string{"serve", "extra-arg"}, code: 2, stderr: []string{"serve takes no arguments"}},
		{name: "boolean yes in the environment", args: []string{"serve", "--db", unbound}, env: []string{"KEYGATE_ALLOW_INSECURE_ADMIN=yes"}, code: 2,
			stderr: []string{`KEYGATE_ALLOW_INSECURE_ADMIN="yes"`}},
		{name: "boolean on in a flag", args: []string{"serve", "--db", unbound, "--allow-insecure-admin=on"}, code: 2, stderr: []string{`"on"`, "allow-insecure-admin"}},
		{name: "unknown setting in the config file", args: []string{"serve", "--config", write("typo.yaml", "grpc-adr: x\n")}, code: 2, stderr: []string{`unknown setting "grpc-adr"`}},
		{name: "boolean yes in the config file", args: []string{"serve", "--config", write("yes.yaml", "allow-insecure-admin: yes\n")}, code: 2, stderr: []string{`allow-insecure-admin: "yes"`}},
		{name: "print-config: precedence and redaction",
			args:   []string{"serve", "--print-config", "--db", "flag.db", "--config", write("c.yaml", "db: file.db\ngrpc-addr: file:1\nflush-interval: 3s\n")},
			env:    []string{"KEYGATE_GRPC_ADDR=env:1", "KEYGATE_ADMIN_TOKEN=kgadmin-secret"},
			stdout: []string{`db: "flag.db"`, `grpc-addr: "env:1"`, `flush-interval: "3s"`, "KEYGATE_ADMIN_TOKEN: set (redacted)"}, notWant: []string{"kgadmin-secret"}},
		{name: "serve on a busy port", args: []string{"serve", "--db", unbound, "--grpc-addr", s.grpcAddr, "--admin-addr", "127.0.0.1:0"},
			env: []string{"KEYGATE_GRPC_ADR=typo"}, code: 1,
			stderr: []string{"address already in use", "unknown environment variable", "KEYGATE_GRPC_ADR"}, notWant: []string{"typo"},
			after: func(t *testing.T) {
				for _, f := range []string{unbound, unbound + ".admin-token"} {
					if _, err := os.Stat(f); err == nil {
						t.Errorf("serve failed to bind but created %s", f)
					}
				}
			}},

		{name: "import of one account", args: []string{"import", "--db", filepath.Join(tmp, "imported.db"),
			write("one.jsonl", `{"name":"Acme","keys":[{"name":"k","secret":"`+secret+`"}]}`)}, stdout: []string{"imported 1 account and 1 key in"}},
		{name: "import numbers keys from 1", args: []string{"import", "--db", filepath.Join(tmp, "dup.db"),
			write("dup.jsonl", `{"name":"Acme","keys":[{"name":"a","secret":"`+secret+`"},{"name":"b","secret":"`+secret+`"}]}`)}, code: 1,
			stderr: []string{"line 1: key 2: "}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(bin, tc.args...)
			cmd.Env = append(cleanEnv(), tc.env...)
			cmd.Dir = tc.dir
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil && cmd.ProcessState == nil {
				t.Fatal(err) // not started; an exit status is checked below
			}
			if code := cmd.ProcessState.ExitCode(); code != tc.code {
				t.Errorf("exit code %d, want %d", code, tc.code)
			}
			for _, w := range tc.stdout {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("stdout lacks %q", w)
				}
			}
			for _, w := range tc.stderr {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr lacks %q", w)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(stdout.String()+stderr.String(), w) {
					t.Errorf("output has %q", w)
				}
			}
			if tc.after != nil {
				tc.after(t)
			}
			if t.Failed() {
				t.Logf("keygate %s\nstdout:\n%s\nstderr:\n%s", strings.Join(tc.args, " "), stdout.String(), stderr.String())
			}
		})
	}
	s.stop()
}
