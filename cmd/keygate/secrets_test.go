package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/prototext"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/keygate/keygate/authz"
)

// printed is one thing keygate printed or answered during a run.
type printed struct {
	what, text string
}

// TestSecretsNeverPrinted drives a full run (serve, every CLI command, good
// and bad Checks, errors, metrics) and then looks for every secret it
// created, and the admin tokens, in everything that was printed or
// answered. A key's secret may appear only in the output of the command
// that created it; tokens nowhere. A secret also counts as printed when
// 16 characters of its random part are.
func TestSecretsNeverPrinted(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary")
	}
	db := filepath.Join(t.TempDir(), "keygate.db")
	s := startServer(t, db)
	var out []printed
	cli := func(args ...string) string {
		t.Helper()
		stdout, stderr, _ := s.tryCLI(args...)
		what := "keygate " + strings.Join(args, " ")
		out = append(out, printed{what + " (stdout)", stdout}, printed{what + " (stderr)", stderr})
		return stdout
	}
	secrets := make(map[string]string) // secret -> the command that showed it

	var acct accountJSON
	if err := json.Unmarshal([]byte(cli("account", "create", "--name", "Acme", "--balance", "100", "-o", "json")), &acct); err != nil {
		t.Fatal(err)
	}
	cli("account", "create", "--name", "Other")
	text := cli("key", "create", acct.ID, "--name", "text")
	secrets[secretIn(t, text)] = out[len(out)-2].what
	textKeyID := fieldIn(t, text, "ID:")
	var created secretJSON
	if err := json.Unmarshal([]byte(cli("key", "create", acct.ID, "--name", "json", "-o", "json")), &created); err != nil {
		t.Fatal(err)
	}
	secrets[created.Secret] = out[len(out)-2].what
	var rotated secretJSON
	if err := json.Unmarshal([]byte(cli("key", "rotate", created.Key.ID, "--grace", "1h", "-o", "json")), &rotated); err != nil {
		t.Fatal(err)
	}
	secrets[rotated.Secret] = out[len(out)-2].what
	rotatedText := cli("key", "rotate", rotated.Key.ID)
	secrets[secretIn(t, rotatedText)] = out[len(out)-2].what

	for _, args := range [][]string{
		{"key", "get", textKeyID}, {"key", "get", created.Key.ID, "-o", "json"}, {"key", "list", acct.ID}, {"key", "list", acct.ID, "-o", "json"},
		{"key", "revoke", textKeyID}, {"account", "get", acct.ID}, {"account", "list"}, {"account", "list", "-o", "json"},
		{"account", "debit", acct.ID, "--amount", "5", "--key", created.Key.ID, "--idempotency-key", "usage-1"},
		{"account", "credit", acct.ID, "--amount", "5", "--idempotency-key", "usage-1"}, // a conflict
		{"account", "ledger", acct.ID}, {"account", "ledger", acct.ID, "-o", "json"},
		{"key", "rotate", textKeyID}, // a revoked key: refused
		{"key", "get", "key_nope"}, {"account", "frobnicate"}, {"help"},
	} {
		cli(args...)
	}
	wrongToken := "kgadmin-" + strings.Repeat("w", 43)
	wrongFile := filepath.Join(t.TempDir(), "wrong-token")
	if err := os.WriteFile(wrongFile, []byte(wrongToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cli("account", "list", "--admin-token-file", wrongFile)

	// Checks with every secret, good, mistyped and revoked, and what they answered.
	conn, err := grpc.NewClient(s.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := authv3.NewAuthorizationClient(conn)
	for secret := range secrets {
		for _, auth := range []string{"Bearer " + secret, "Bearer " + secret[:len(secret)-1] + "x", secret, "Basic " + secret, "Bearer " + secret + "," + secret} {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			resp, err := client.Check(ctx, envoyRequest(auth))
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, printed{"Check answer", prototext.Format(resp)})
		}
	}
	resp, err := http.Get("http://" + s.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	out = append(out, printed{"/metrics", string(metrics)})
	s.stop()
	out = append(out, printed{"keygate serve's log", s.stderr.String()})

	token, err := readToken(db + ".admin-token")
	if err != nil {
		t.Fatal(err)
	}
	if len(secrets) != 4 {
		t.Fatalf("%d secrets created, want 4", len(secrets))
	}
	for _, p := range out {
		for secret, shownBy := range secrets {
			random := secret[len(authz.SecretPrefix) : len(authz.SecretPrefix)+16]
			if p.what != shownBy && strings.Contains(p.text, random) {
				t.Errorf("%s shows the secret that %s created:\n%s", p.what, shownBy, p.text)
			}
		}
		for _, tok := range []string{token, wrongToken} {
			if strings.Contains(p.text, tok[len(adminTokenPrefix):len(adminTokenPrefix)+16]) {
				t.Errorf("%s shows an admin token:\n%s", p.what, p.text)
			}
		}
	}
	t.Logf("%d outputs scanned (%d bytes) for %d secrets and 2 admin tokens", len(out), total(out), len(secrets))
}

func total(ps []printed) (n int) {
	for _, p := range ps {
		n += len(p.text)
	}
	return n
}
