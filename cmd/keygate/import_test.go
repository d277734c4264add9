package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/store/bolt"
	"github.com/keygate/keygate/store/etcd"
	"github.com/keygate/keygate/store/etcd/etcdtest"
)

func runImportCLI(t *testing.T, db, file string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), []string{"import", "--db", db, file}, &out, &errOut)
	return code, out.String(), errOut.String()
}

func writeFile(t *testing.T, lines ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "import.jsonl")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestImportCommand(t *testing.T) {
	db := filepath.Join(t.TempDir(), "keygate.db")
	own, foreign := authz.NewSecret(), "sk-proj-0123456789abcdefghijABCDEFGHIJ"
	hashed := sha256.Sum256([]byte("a key from elsewhere, given by its hash"))
	code, stdout, stderr := runImportCLI(t, db, writeFile(t,
		`{"name":"Acme","balance":1000,"keys":[{"name":"own","secret":"`+own+`"},{"name":"foreign","secret":"`+foreign+`"}]}`,
		``,
		`{"name":"Globex","keys":[{"name":"hashed","sha256":"`+hex.EncodeToString(hashed[:])+`","expireTime":"2200-01-01T00:00:00Z"}]}`,
	))
	if code != 0 || !strings.Contains(stdout, "imported 2 accounts and 3 keys") {
		t.Fatalf("import: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}

	s, err := bolt.Open(db, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	a := authz.NewAuthorizer(s, nil)
	for _, c := range []struct {
		auth string
		want authz.Reason
	}{
		{"Bearer " + own, authz.ReasonAllowed},
		{"Bearer " + foreign, authz.ReasonAllowed},
		{"Bearer a key from elsewhere, given by its hash", authz.ReasonMalformedKey},
		{"Bearer sk-proj-0123456789abcdefghijABCDEFGHIX", authz.ReasonUnknownKey},
	} {
		d, err := a.Authorize(context.Background(), authz.Request{Authorization: c.auth})
		if err != nil || d.Reason != c.want {
			t.Errorf("Authorize(%.30q) = %v, %v; want %v", c.auth, d.Reason, err, c.want)
		}
	}
	if _, found, _ := s.LookupKey(context.Background(), hashed); !found {
		t.Error("the key imported by its hash is not stored")
	}
	keys, _, err := s.Keys(context.Background(), mustAccount(t, s, "Acme").ID, authz.Page{})
	if err != nil || len(keys) != 2 || keys[0].Hint != authz.SecretHint(own) || keys[1].Hint != "sk-...GHIJ" {
		t.Errorf("keys of Acme: %+v, %v", keys, err)
	}
}

func mustAccount(t *testing.T, s *bolt.Store, name string) authz.Account {
	t.Helper()
	as, _, err := s.Accounts(context.Background(), authz.Page{})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range as {
		if a.Name == name {
			return a
		}
	}
	t.Fatalf("no account %q", name)
	return authz.Account{}
}

func TestImportRefusesBadLines(t *testing.T) {
	db := filepath.Join(t.TempDir(), "keygate.db")
	typo := []byte(authz.NewSecret())
	typo[10] ^= 1
	code, stdout, stderr := runImportCLI(t, db, writeFile(t,
		`{"name":"fine","keys":[{"name":"k","sha256":"`+strings.Repeat("ab", 32)+`"}]}`,
		`{"name":"bad json"`,
		`{"name":"typo","keys":[{"name":"k","secret":"`+string(typo)+`"}]}`,
		`{"name":"both","keys":[{"name":"k","secret":"sk-proj-0123456789abcdefghij","sha256":"00"}]}`,
		`{"name":"short hash","keys":[{"name":"k","sha256":"abcd"}]}`,
		`{"name":"unknown field","balanse":5}`,
	))
	if code != 1 || stdout != "" {
		t.Fatalf("exit %d, stdout %q; want 1 and nothing", code, stdout)
	}
	for _, line := range []string{"line 2:", "line 3: key 1: the secret", "line 4: key 1: give either", "line 5: key 1: sha256", "line 6:"} {
		if !strings.Contains(stderr, line) {
			t.Errorf("stderr lacks %q:\n%s", line, stderr)
		}
	}
	if strings.Contains(stderr, "line 1:") || !strings.Contains(stderr, "5 invalid line(s), nothing imported") {
		t.Errorf("stderr:\n%s", stderr)
	}
	if _, err := os.Stat(db); !os.IsNotExist(err) {
		t.Errorf("a refused import touched the database: %v", err)
	}

	// Lines that parse but that the store refuses are reported by line too.
	code, _, stderr = runImportCLI(t, db, writeFile(t,
		`{"name":"fine"}`,
		`{"name":"negative","balance":-5}`,
		`{"name":"","keys":[]}`,
	))
	if code != 1 || !strings.Contains(stderr, "line 2: invalid_argument: opening balance") || !strings.Contains(stderr, "line 3: invalid_argument: account name") {
		t.Errorf("exit %d, stderr:\n%s", code, stderr)
	}
	s, err := bolt.Open(db, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if n := s.Stats().Accounts; n != 0 {
		t.Errorf("a refused import stored %d accounts", n)
	}
}

// TestImportEtcd imports into an empty etcd prefix, then into the prefix
// in use by a replica, which sees the new keys; an import with a key that
// the prefix holds already is refused whole, the accounts written before
// the clash removed, however many transactions they took.
func TestImportEtcd(t *testing.T) {
	ctx := t.Context()
	c := etcdtest.Start(t, 1)
	importEtcd := func(file string) (int, string) {
		var out, errOut bytes.Buffer
		code := run(ctx, []string{"import", "--store", "etcd", "--etcd-endpoints", strings.Join(c.Endpoints(), ","), "--etcd-prefix", "/imported/", file}, &out, &errOut)
		return code, out.String() + errOut.String()
	}
	// keysLine is an account line with n new keys, and the keys' secrets.
	keysLine := func(name string, n int, also ...string) (string, []string) {
		secrets := append([]string(nil), also...)
		for len(secrets) < n {
			secrets = append(secrets, authz.NewSecret())
		}
		var ks []string
		for i, s := range secrets {
			ks = append(ks, fmt.Sprintf(`{"name":"k%d","secret":"%s"}`, i, s))
		}
		return fmt.Sprintf(`{"name":%q,"balance":10,"keys":[%s]}`, name, strings.Join(ks, ",")), secrets
	}

	first, firstSecrets := keysLine("Acme", 2)
	if code, out := importEtcd(writeFile(t, first)); code != 0 || !strings.Contains(out, "imported 1 account and 2 keys") {
		t.Fatalf("import into an empty prefix: exit %d: %s", code, out)
	}
	cli := c.Client(t)
	s, err := etcd.Open(ctx, cli, "/imported/", etcd.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	allowed := func(secret string) bool {
		d, err := authz.NewAuthorizer(s, nil).Authorize(ctx, authz.Request{Authorization: "Bearer " + secret})
		return err == nil && d.Reason == authz.ReasonAllowed
	}
	if !allowed(firstSecrets[0]) || !allowed(firstSecrets[1]) {
		t.Fatal("imported keys are not allowed")
	}

	big, bigSecrets := keysLine("Globex", 50) // past one transaction
	small, smallSecrets := keysLine("Initech", 1)
	if code, out := importEtcd(writeFile(t, big, small)); code != 0 || !strings.Contains(out, "imported 2 accounts and 51 keys") {
		t.Fatalf("import into a prefix in use: exit %d: %s", code, out)
	}
	waitUntil(t, "the replica allows the keys imported while it runs", func() bool {
		return allowed(bigSecrets[49]) && allowed(smallSecrets[0])
	})

	// The third line's last key is the first import's.
	ok1, okSecrets := keysLine("Umbrella", 60)
	ok2, _ := keysLine("Hooli", 1)
	clash, _ := keysLine("Clash", 45, firstSecrets[1:]...)
	code, out := importEtcd(writeFile(t, ok1, ok2, clash))
	if code == 0 || !strings.Contains(out, "line 3: conflict") || !strings.Contains(out, "nothing imported") {
		t.Fatalf("an import with a stored key: exit %d: %s", code, out)
	}
	if err := etcd.Verify(ctx, cli, "/imported/"); err != nil {
		t.Errorf("Verify after a refused import: %v", err)
	}
	d, err := etcd.Dump(ctx, cli, "/imported/")
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Accounts) != 3 || len(d.Keys) != 53 {
		t.Errorf("after a refused import etcd holds %d accounts and %d keys, want 3 and 53", len(d.Accounts), len(d.Keys))
	}
	if allowed(okSecrets[0]) {
		t.Error("a key of a refused import is allowed")
	}
}
