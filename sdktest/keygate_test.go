package sdktest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keygate/keygate/authz"
)

// keygate is a keygate server built from the main module and run with its
// HTTP check endpoint.
type keygate struct {
	httpAddr, admin, token string
}

// keys are the secrets of the cases, one per state a check tells apart.
type keys struct {
	valid, unknown, revoked, zero, disabled string
	accountID, keyID                        string // of valid
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startKeygate builds keygate, runs it on a fresh database and makes keys.
func startKeygate(t *testing.T) (*keygate, keys) {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "keygate")
	build := exec.Command("go", "build", "-o", bin, "./cmd/keygate")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/keygate: %v\n%s", err, out)
	}
	k := &keygate{httpAddr: freeAddr(t), admin: freeAddr(t)}
	db := filepath.Join(dir, "keygate.db")
	cmd := exec.Command(bin, "serve", "--db", db, "--grpc-addr", freeAddr(t), "--admin-addr", k.admin, "--http-addr", k.httpAddr)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if t.Failed() {
			t.Logf("keygate output:\n%s", &out)
		}
	})
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if resp, err := http.Get("http://" + k.admin + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("keygate not ready after 20s:\n%s", &out)
		}
	}
	token, err := os.ReadFile(db + ".admin-token")
	if err != nil {
		t.Fatal(err)
	}
	k.token = strings.TrimSpace(strings.SplitN(string(token), "\n", 2)[0])

	account := func(name string, balance int) string {
		var a struct{ ID string }
		k.call(t, "/v1/accounts", fmt.Sprintf(`{"name":%q,"balance":%d}`, name, balance), &a)
		return a.ID
	}
	key := func(account string) (secret, id string) {
		var c struct {
			Key    struct{ ID string }
			Secret string
		}
		k.call(t, "/v1/accounts/"+account+"/keys", `{"name":"sdk"}`, &c)
		return c.Secret, c.Key.ID
	}
	var ks keys
	rich, broke, blocked := account("Acme", 1000), account("Broke", 0), account("Blocked", 1000)
	ks.accountID = rich
	ks.valid, ks.keyID = key(rich)
	ks.zero, _ = key(broke)
	ks.disabled, _ = key(blocked)
	k.call(t, "/v1/accounts/"+blocked+":disable", `{}`, nil)
	var revokedID string
	ks.revoked, revokedID = key(rich)
	k.call(t, "/v1/keys/"+revokedID+":revoke", `{}`, nil)
	ks.unknown = authz.NewSecret() // well formed, never stored
	return k, ks
}

// call posts body to the admin API and decodes the answer into v.
func (k *keygate) call(t *testing.T, path, body string, v any) {
	t.Helper()
	req, _ := http.NewRequest("POST", "http://"+k.admin+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+k.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 && resp.StatusCode != 201 {
		t.Fatalf("POST %s: %s", path, resp.Status)
	}
	if v != nil {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatal(err)
		}
	}
}

// checks returns how many checks keygate's HTTP endpoint has answered,
// from its /metrics.
func (k *keygate) checks(t *testing.T) int {
	t.Helper()
	resp, err := http.Get("http://" + k.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	n := 0
	for sc := bufio.NewScanner(resp.Body); sc.Scan(); {
		line := sc.Text()
		if !strings.HasPrefix(line, `keygate_checks_total{api="http"`) {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			t.Fatal(err)
		}
		n += int(v)
	}
	return n
}
