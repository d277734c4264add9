package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/answer"
	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/httpauth/proxytest"
)

// upstream is the API behind the proxy: it answers every request with 200
// and records the headers it was sent.
type upstream struct {
	*httptest.Server
	mu   sync.Mutex
	seen []http.Header
}

func newUpstream(t *testing.T) *upstream {
	u := new(upstream)
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.seen = append(u.seen, r.Header.Clone())
		u.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"object":"chat.completion"}`)
	}))
	t.Cleanup(u.Close)
	return u
}

// last returns the headers of the latest request the upstream received.
func (u *upstream) last(t *testing.T) http.Header {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.seen) == 0 {
		t.Fatal("the upstream received no request")
	}
	return u.seen[len(u.seen)-1]
}

// reply is what a client of the proxy received.
type reply struct {
	status      int
	contentType string
	challenge   string
	body        string
}

// send posts a chat completion to path through p.
func send(t *testing.T, p *proxytest.Proxy, path string, headers ...string) reply {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "POST", p.URL+path, strings.NewReader(`{"model":"gpt-4o-mini"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	resp, body := roundTrip(t, req)
	return reply{resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("Www-Authenticate"), body}
}

// roundTrip sends req and returns the response with its whole body read.
func roundTrip(t *testing.T, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

// keys is what the proxy tests need in keygate's store.
type keys struct {
	accountID, keyID, active, zero, revoked string
}

func makeKeys(t *testing.T, s *server) keys {
	var rich, broke accountJSON
	s.cliJSON(&rich, "account", "create", "--name", "Acme Corp", "--balance", "100")
	s.cliJSON(&broke, "account", "create", "--name", "Broke Ltd", "--balance", "0")
	var active, zero, revoked secretJSON
	s.cliJSON(&active, "key", "create", rich.ID, "--name", "live")
	s.cliJSON(&zero, "key", "create", broke.ID, "--name", "broke")
	s.cliJSON(&revoked, "key", "create", rich.ID, "--name", "old")
	s.cli("key", "revoke", revoked.Key.ID)
	return keys{rich.ID, active.Key.ID, active.Secret, zero.Secret, revoked.Secret}
}

// throughProxy sends requests through p to up, with keygate deciding on
// its HTTP endpoint, and checks what the client and the upstream see. The
// proxy's default route accepts Authorization, its /anthropic/ route
// Authorization and x-api-key with Anthropic-style errors.
func throughProxy(t *testing.T, p *proxytest.Proxy, up *upstream, k keys) {
	denied := func(name string, got reply, r authz.Reason, route authz.Route) {
		t.Helper()
		d := answer.DenialFor(r, route)
		want := reply{d.Status, "application/json", d.Challenge, d.Body}
		if got != want {
			t.Errorf("%s: client got\n%+v\nwant\n%+v", name, got, want)
		}
	}
	allowed := func(name string, got reply, stripped ...string) {
		t.Helper()
		if got.status != 200 || got.body != `{"object":"chat.completion"}` {
			t.Fatalf("%s: client got %+v, want the upstream's 200", name, got)
		}
		h := up.last(t)
		if h.Get("X-Account-Id") != k.accountID || h.Get("X-Key-Id") != k.keyID {
			t.Errorf("%s: upstream saw x-account-id %q, x-key-id %q; want %q, %q", name, h.Values("X-Account-Id"), h.Values("X-Key-Id"), k.accountID, k.keyID)
		}
		for _, header := range stripped {
			if v := h.Values(header); len(v) != 0 {
				t.Errorf("%s: upstream saw %s: %q", name, header, v)
			}
		}
		for header, vs := range h {
			for _, v := range vs {
				if strings.Contains(v, k.active) {
					t.Errorf("%s: upstream saw the key in %s", name, header)
				}
			}
		}
	}

	openAI, anthropic := authz.Route{}, authz.Route{Style: authz.StyleAnthropic}
	denied("no key", send(t, p, "/v1/chat/completions"), authz.ReasonNoKey, openAI)
	allowed("valid key, spoofed identity",
		send(t, p, "/v1/chat/completions", "Authorization", "Bearer "+k.active, "X-Account-Id", "acct_SPOOFED", "X-Key-Id", "key_SPOOFED"),
		"Authorization")
	denied("zero balance", send(t, p, "/v1/chat/completions", "Authorization", "Bearer "+k.zero), authz.ReasonInsufficientBalance, openAI)
	denied("revoked", send(t, p, "/v1/chat/completions", "Authorization", "Bearer "+k.revoked), authz.ReasonRevokedKey, openAI)

	denied("anthropic: no key", send(t, p, "/anthropic/v1/messages"), authz.ReasonNoKey, anthropic)
	allowed("anthropic: x-api-key", send(t, p, "/anthropic/v1/messages", "X-Api-Key", k.active), "X-Api-Key", "Authorization")
	allowed("anthropic: Bearer", send(t, p, "/anthropic/v1/messages", "Authorization", "Bearer "+k.active), "X-Api-Key", "Authorization")
	denied("anthropic: two different keys", send(t, p, "/anthropic/v1/messages", "Authorization", "Bearer "+k.active, "X-Api-Key", k.zero), authz.ReasonConflictingKeys, anthropic)
	denied("anthropic: zero balance", send(t, p, "/anthropic/v1/messages", "X-Api-Key", k.zero), authz.ReasonInsufficientBalance, anthropic)
}

// startKeygate runs keygate with its HTTP endpoint, the keys the proxy tests
// use, and an upstream.
func startKeygate(t *testing.T) (s *server, httpAddr string, k keys, up *upstream) {
	httpAddr = freeAddr(t)
	s = startServer(t, filepath.Join(t.TempDir(), "keygate.db"), "--http-addr", httpAddr)
	return s, httpAddr, makeKeys(t, s), newUpstream(t)
}

// addrs returns the addresses of a proxy in front of keygate's HTTP
// endpoint and up.
func addrs(t *testing.T, httpAddr string, up *upstream) proxytest.Addrs {
	return proxytest.Addrs{Listen: freeAddr(t), Keygate: httpAddr, Upstream: strings.TrimPrefix(up.URL, "http://")}
}

func TestCaddyForwardAuth(t *testing.T) {
	proxytest.Need(t, "caddy", "apt-get install caddy")
	s, httpAddr, k, up := startKeygate(t)
	p := proxytest.Caddy(t, addrs(t, httpAddr, up))
	throughProxy(t, p, up, k)
	revokeThenDenied(t, s, p, k)
}

func TestNginxAuthRequest(t *testing.T) {
	proxytest.Need(t, "nginx", "apt-get install nginx")
	s, httpAddr, k, up := startKeygate(t)
	p := proxytest.Nginx(t, addrs(t, httpAddr, up))
	throughProxy(t, p, up, k)
	revokeThenDenied(t, s, p, k)
}

// revokeThenDenied revokes the active key with the CLI and checks that the
// very next request through the proxy is refused.
func revokeThenDenied(t *testing.T, s *server, p *proxytest.Proxy, k keys) {
	s.cli("key", "revoke", k.keyID)
	got := send(t, p, "/v1/chat/completions", "Authorization", "Bearer "+k.active)
	if d := answer.DenialFor(authz.ReasonRevokedKey, authz.Route{}); got.status != 401 || got.body != d.Body {
		t.Errorf("after revoking: %+v, want 401 %s", got, d.Body)
	}
}
