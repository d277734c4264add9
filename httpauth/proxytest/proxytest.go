// Package proxytest runs Debian's Caddy and nginx in front of keygate's
// HTTP check endpoint, configured exactly as the README shows, for the tests
// of this module and of sdktest. The configurations are read from the
// README's code blocks marked <!-- proxytest: NAME -->, with the README's
// addresses replaced by the test's, so that the README cannot drift from
// what is tested.
package proxytest

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The README's addresses.
const (
	readmeListen   = "127.0.0.1:8080" // the proxy
	readmeKeygate  = "127.0.0.1:9193" // keygate's HTTP check endpoint
	readmeUpstream = "127.0.0.1:8000" // the API
)

// Addrs are the host:port addresses a test runs a proxy on.
type Addrs struct {
	Listen   string // where the proxy listens
	Keygate  string // keygate's HTTP check endpoint
	Upstream string // the API behind the proxy
}

// Need returns the path of an external program a test runs. Outside CI a
// missing program skips the test; in CI (CI set), where .ci/run installs
// it, it fails the test. install says how to install it.
func Need(t testing.TB, name, install string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("runs " + name)
	}
	if path, err := exec.LookPath(name); err == nil {
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

// README returns the code blocks of the README marked for tests, by name,
// with the README's addresses replaced by a's.
func README(t testing.TB, a Addrs) map[string]string {
	t.Helper()
	_, here, _, _ := runtime.Caller(0)
	path := filepath.Join(filepath.Dir(here), "..", "..", "README.md")
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blocks := map[string]string{}
	var name string
	var block *strings.Builder
	for sc := bufio.NewScanner(bytes.NewReader(text)); sc.Scan(); {
		line := sc.Text()
		switch {
		case block != nil && line == "```":
			blocks[name] = strings.NewReplacer(readmeListen, a.Listen, readmeKeygate, a.Keygate, readmeUpstream, a.Upstream).Replace(block.String())
			name, block = "", nil
		case block != nil:
			block.WriteString(line + "\n")
		case strings.HasPrefix(line, "<!-- proxytest: "):
			name = strings.TrimSuffix(strings.TrimPrefix(line, "<!-- proxytest: "), " -->")
		case name != "" && strings.HasPrefix(line, "```"):
			block = new(strings.Builder)
		}
	}
	for _, want := range []string{"Caddyfile", "keygate-check.conf", "keygate-allow.conf", "nginx server"} {
		if blocks[want] == "" {
			t.Fatalf("README.md has no block marked <!-- proxytest: %s -->", want)
		}
	}
	return blocks
}

// Proxy is a reverse proxy child process, run in the foreground with its
// configuration in a temporary directory.
type Proxy struct {
	URL    string // http://Addrs.Listen
	cmd    *exec.Cmd
	output *bytes.Buffer
	done   chan struct{} // closed when the process has exited, with its status in exit
	exit   error
}

// Caddy runs the README's Caddyfile on a.
func Caddy(t testing.TB, a Addrs) *Proxy {
	bin := Need(t, "caddy", "apt-get install caddy")
	dir := t.TempDir()
	write(t, dir, "Caddyfile", README(t, a)["Caddyfile"])
	return start(t, dir, a, bin, "run", "--config", filepath.Join(dir, "Caddyfile"), "--adapter", "caddyfile")
}

// Nginx runs the README's nginx server and include files on a, in an http
// block that keeps nginx's files in a temporary directory.
func Nginx(t testing.TB, a Addrs) *Proxy {
	bin := Need(t, "nginx", "apt-get install nginx")
	dir := t.TempDir()
	blocks := README(t, a)
	for _, name := range []string{"keygate-check.conf", "keygate-allow.conf"} {
		write(t, dir, name, blocks[name])
	}
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;\n" // workers keep access to the 0700 temporary directory
	}
	write(t, dir, "nginx.conf", fmt.Sprintf(`%sdaemon off;
worker_processes 1;
pid %[2]s/nginx.pid;
error_log stderr warn;
events { worker_connections 64; }
http {
	access_log off;
	client_body_temp_path %[2]s/client_body;
	proxy_temp_path %[2]s/proxy;
	fastcgi_temp_path %[2]s/fastcgi;
	uwsgi_temp_path %[2]s/uwsgi;
	scgi_temp_path %[2]s/scgi;
%[3]s}
`, user, dir, blocks["nginx server"]))
	return start(t, dir, a, bin, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-e", "stderr")
}

func write(t testing.TB, dir, name, text string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

// start runs bin with args in dir and waits until the proxy answers.
func start(t testing.TB, dir string, a Addrs, bin string, args ...string) *Proxy {
	t.Helper()
	p := &Proxy{URL: "http://" + a.Listen, output: new(bytes.Buffer), done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Dir = dir
	p.cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "XDG_DATA_HOME=" + dir, "XDG_CONFIG_HOME=" + dir}
	p.cmd.Stdout, p.cmd.Stderr = p.output, p.output
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exit = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done: // the exit status of a proxy told to stop says nothing
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
		if resp, err := http.Get(p.URL + "/"); err == nil {
			resp.Body.Close()
			return p
		}
		select {
		case <-p.done:
			t.Fatalf("%s exited early: %v\n%s", bin, p.exit, p.output)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not answering after 20s:\n%s", bin, p.output)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
