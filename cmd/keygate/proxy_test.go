package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/keygate/keygate/authz"
)

// needBinary returns the path of an external program a test runs. Outside
// CI a missing program skips the test; in CI (CI set), where .ci/run
// installs it, it fails the test.
func needBinary(t *testing.T, name, install string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("runs keygate and " + name)
	}
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if _, err := os.Stat("/usr/sbin/" + name); err == nil {
		return "/usr/sbin/" + name // Debian's nginx, off a user's PATH
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is not installed, but CI is set: .ci/run must install it (%s)", name, install)
	}
	t.Skipf("%s is not installed (%s); skipped outside CI", name, install)
	return ""
}

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
		io.WriteString(w, `{"object":"chat.completion"}`)
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

// proxy is a reverse proxy child process, run in the foreground with its
// configuration in a temporary directory.
type proxy struct {
	cmd    *exec.Cmd
	output *bytes.Buffer
	done   chan error
	url    string
}

// startProxy writes config (a text/template given the addresses in vars)
// to dir/name, runs bin with args, and waits until url answers.
func startProxy(t *testing.T, dir, name, config string, vars map[string]string, url, bin string, args ...string) *proxy {
	t.Helper()
	var conf bytes.Buffer
	if err := template.Must(template.New(name).Parse(config)).Execute(&conf, vars); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), conf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &proxy{output: new(bytes.Buffer), done: make(chan error, 1), url: url}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Dir = dir
	p.cmd.Env = append(cleanEnv(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	p.cmd.Stdout, p.cmd.Stderr = p.output, p.output
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(bin), p.output)
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		if resp, err := http.Get(url + "/"); err == nil {
			resp.Body.Close()
			return p
		}
		select {
		case err := <-p.done:
			t.Fatalf("%s exited early: %v\n%s\nconfig:\n%s", bin, err, p.output, conf.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not answering after 20s:\n%s", bin, p.output)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// reply is what a client of the proxy received.
type reply struct {
	status      int
	contentType string
	challenge   string
	body        string
}

func (p *proxy) send(t *testing.T, path string, headers ...string) reply {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "POST", p.url+path, strings.NewReader(`{"model":"gpt-4o-mini"}`))
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
// x-api-key with Anthropic-style errors.
func throughProxy(t *testing.T, p *proxy, up *upstream, k keys) {
	denied := func(name string, got reply, r authz.Reason, s authz.Style) {
		t.Helper()
		d := authz.DenialFor(r, s)
		want := reply{d.Status, "application/json", d.Challenge, d.Body}
		if got != want {
			t.Errorf("%s: client got\n%+v\nwant\n%+v", name, got, want)
		}
	}
	allowed := func(name string, got reply, stripped string) {
		t.Helper()
		if got.status != 200 || got.body != `{"object":"chat.completion"}` {
			t.Fatalf("%s: client got %+v, want the upstream's 200", name, got)
		}
		h := up.last(t)
		if h.Get("X-Account-Id") != k.accountID || h.Get("X-Key-Id") != k.keyID {
			t.Errorf("%s: upstream saw x-account-id %q, x-key-id %q; want %q, %q", name, h.Values("X-Account-Id"), h.Values("X-Key-Id"), k.accountID, k.keyID)
		}
		if v := h.Values(stripped); len(v) != 0 {
			t.Errorf("%s: upstream saw %s: %q", name, stripped, v)
		}
		for header, vs := range h {
			for _, v := range vs {
				if strings.Contains(v, k.active) {
					t.Errorf("%s: upstream saw the key in %s", name, header)
				}
			}
		}
	}

	denied("no key", p.send(t, "/v1/chat/completions"), authz.ReasonNoKey, authz.StyleOpenAI)
	allowed("valid key, spoofed identity",
		p.send(t, "/v1/chat/completions", "Authorization", "Bearer "+k.active, "X-Account-Id", "acct_SPOOFED", "X-Key-Id", "key_SPOOFED"),
		"Authorization")
	denied("zero balance", p.send(t, "/v1/chat/completions", "Authorization", "Bearer "+k.zero), authz.ReasonInsufficientBalance, authz.StyleOpenAI)
	denied("revoked", p.send(t, "/v1/chat/completions", "Authorization", "Bearer "+k.revoked), authz.ReasonRevokedKey, authz.StyleOpenAI)

	denied("anthropic: no key", p.send(t, "/anthropic/v1/messages"), authz.ReasonNoKey, authz.StyleAnthropic)
	allowed("anthropic: x-api-key", p.send(t, "/anthropic/v1/messages", "X-Api-Key", k.active), "X-Api-Key")
	denied("anthropic: zero balance", p.send(t, "/anthropic/v1/messages", "X-Api-Key", k.zero), authz.ReasonInsufficientBalance, authz.StyleAnthropic)
}

// caddyfile is the Caddy configuration of the README, on test addresses.
const caddyfile = `{
	admin off
	auto_https off
}

http://{{.listen}} {
	# Anthropic-style clients: the key in x-api-key, Anthropic error bodies.
	route /anthropic/* {
		forward_auth {{.keygate}} {
			uri /check
			header_up X-Keygate-Credentials x-api-key
			header_up X-Keygate-Error-Style anthropic
			copy_headers X-Account-Id X-Key-Id
		}
		reverse_proxy {{.upstream}} {
			header_up -X-Api-Key
		}
	}
	# Everything else: Authorization: Bearer, OpenAI error bodies.
	route {
		forward_auth {{.keygate}} {
			uri /check
			copy_headers X-Account-Id X-Key-Id
		}
		reverse_proxy {{.upstream}} {
			header_up -Authorization
		}
	}
}
`

// nginxConf is the nginx configuration of the README, on test addresses.
const nginxConf = `{{.user}}daemon off;
worker_processes 1;
pid {{.dir}}/nginx.pid;
error_log stderr warn;
events { worker_connections 64; }

http {
	access_log off;
	client_body_temp_path {{.dir}}/client_body;
	proxy_temp_path {{.dir}}/proxy;
	fastcgi_temp_path {{.dir}}/fastcgi;
	uwsgi_temp_path {{.dir}}/uwsgi;
	scgi_temp_path {{.dir}}/scgi;

	server {
		listen {{.listen}};

		# Everything else: Authorization: Bearer, OpenAI error bodies.
		location / {
			auth_request /_keygate;
			include {{.dir}}/keygate-allow.conf;
			proxy_set_header Authorization "";
			proxy_pass http://{{.upstream}};
		}

		# Anthropic-style clients: the key in x-api-key, Anthropic error bodies.
		location /anthropic/ {
			auth_request /_keygate_anthropic;
			include {{.dir}}/keygate-allow.conf;
			proxy_set_header X-Api-Key "";
			proxy_pass http://{{.upstream}};
		}

		location = /_keygate {
			internal;
			include {{.dir}}/keygate-check.conf;
		}
		location = /_keygate_anthropic {
			internal;
			proxy_set_header X-Keygate-Credentials x-api-key;
			proxy_set_header X-Keygate-Error-Style anthropic;
			include {{.dir}}/keygate-check.conf;
		}

		# auth_request keeps only the status of a denial: keygate also sends
		# its body in X-Keygate-Error, and these answer with it.
		location @keygate_401 {
			default_type application/json;
			add_header WWW-Authenticate $keygate_challenge always;
			return 401 $keygate_error;
		}
		location @keygate_403 {
			default_type application/json;
			return 403 $keygate_error;
		}
	}
}
`

// nginxCheck is keygate-check.conf: the subrequest to keygate.
const nginxCheck = `proxy_pass http://{{.keygate}}/check;
proxy_pass_request_body off;
proxy_set_header Content-Length "";
proxy_set_header X-Keygate-Error-Header 1;
`

// nginxAllow is keygate-allow.conf: what a checked location copies from
// keygate's answer.
const nginxAllow = `auth_request_set $keygate_account $upstream_http_x_account_id;
auth_request_set $keygate_key $upstream_http_x_key_id;
auth_request_set $keygate_error $upstream_http_x_keygate_error;
auth_request_set $keygate_challenge $upstream_http_www_authenticate;
error_page 401 = @keygate_401;
error_page 403 = @keygate_403;
proxy_set_header X-Account-Id $keygate_account;
proxy_set_header X-Key-Id $keygate_key;
`

// startKeygate runs keygate with its HTTP endpoint, the keys the proxy tests
// use, and an upstream.
func startKeygate(t *testing.T) (s *server, httpAddr string, k keys, up *upstream) {
	httpAddr = freeAddr(t)
	s = startServer(t, filepath.Join(t.TempDir(), "keygate.db"), "--http-addr", httpAddr)
	return s, httpAddr, makeKeys(t, s), newUpstream(t)
}

func TestCaddyForwardAuth(t *testing.T) {
	bin := needBinary(t, "caddy", "apt-get install caddy")
	s, httpAddr, k, up := startKeygate(t)
	dir := t.TempDir()
	listen := freeAddr(t)
	p := startProxy(t, dir, "Caddyfile", caddyfile,
		map[string]string{"listen": listen, "keygate": httpAddr, "upstream": strings.TrimPrefix(up.URL, "http://")},
		"http://"+listen, bin, "run", "--config", filepath.Join(dir, "Caddyfile"), "--adapter", "caddyfile")
	throughProxy(t, p, up, k)
	revokeThenDenied(t, s, p, k)
}

func TestNginxAuthRequest(t *testing.T) {
	bin := needBinary(t, "nginx", "apt-get install nginx")
	s, httpAddr, k, up := startKeygate(t)
	dir := t.TempDir()
	listen := freeAddr(t)
	vars := map[string]string{"listen": listen, "keygate": httpAddr, "upstream": strings.TrimPrefix(up.URL, "http://"), "dir": dir}
	if os.Geteuid() == 0 {
		vars["user"] = "user root;\n" // workers keep access to the 0700 temporary directory
	}
	for name, text := range map[string]string{"keygate-check.conf": nginxCheck, "keygate-allow.conf": nginxAllow} {
		var b bytes.Buffer
		template.Must(template.New(name).Parse(text)).Execute(&b, vars)
		if err := os.WriteFile(filepath.Join(dir, name), b.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	p := startProxy(t, dir, "nginx.conf", nginxConf, vars,
		"http://"+listen, bin, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-e", "stderr")
	throughProxy(t, p, up, k)
	revokeThenDenied(t, s, p, k)
}

// revokeThenDenied revokes the active key with the CLI and checks that the
// very next request through the proxy is refused.
func revokeThenDenied(t *testing.T, s *server, p *proxy, k keys) {
	s.cli("key", "revoke", k.keyID)
	got := p.send(t, "/v1/chat/completions", "Authorization", "Bearer "+k.active)
	if d := authz.DenialFor(authz.ReasonRevokedKey, authz.StyleOpenAI); got.status != 401 || got.body != d.Body {
		t.Errorf("after revoking: %+v, want 401 %s", got, d.Body)
	}
}
