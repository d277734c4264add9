package main

import (
	"context"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// TestHTTPEndpointMatchesCheck runs keygate with server-wide route defaults
// and checks that its HTTP endpoint and its gRPC Check give every request
// the same answer: status, WWW-Authenticate, body, identity headers and the
// headers to strip.
func TestHTTPEndpointMatchesCheck(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	httpAddr := freeAddr(t)
	s := startServer(t, filepath.Join(t.TempDir(), "keygate.db"), "--http-addr", httpAddr, "--http-path-prefix", "/ext_authz",
		"--credential-headers", "authorization,x-api-key", "--error-style", "anthropic")
	k := makeKeys(t, s)
	conn, err := grpc.NewClient(s.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := authv3.NewAuthorizationClient(conn)

	// answer is what the proxy makes of either endpoint's reply.
	type answer struct {
		status                    int
		challenge, body           string
		account, key, removeFirst string
	}
	viaGRPC := func(headers map[string]string) answer {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		resp, err := client.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
			Http: &authv3.AttributeContext_HttpRequest{Method: "POST", Path: "/v1/messages", Headers: headers},
		}}})
		if err != nil {
			t.Fatal(err)
		}
		if ok := resp.GetOkResponse(); ok != nil {
			return answer{status: 200, account: ok.GetHeaders()[0].GetHeader().GetValue(), key: ok.GetHeaders()[1].GetHeader().GetValue(),
				removeFirst: strings.Join(ok.GetHeadersToRemove(), ", ")}
		}
		d := resp.GetDeniedResponse()
		a := answer{status: int(d.GetStatus().GetCode()), body: d.GetBody()}
		for _, h := range d.GetHeaders() {
			if h.GetHeader().GetKey() == "www-authenticate" {
				a.challenge = h.GetHeader().GetValue()
			}
		}
		return a
	}
	viaHTTP := func(headers map[string]string) answer {
		req, err := http.NewRequestWithContext(t.Context(), "POST", "http://"+httpAddr+"/ext_authz/v1/messages", nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range headers {
			req.Header.Set(k, v)
		}
		resp, body := roundTrip(t, req)
		return answer{resp.StatusCode, resp.Header.Get("Www-Authenticate"), body,
			resp.Header.Get("X-Account-Id"), resp.Header.Get("X-Key-Id"), resp.Header.Get("X-Envoy-Auth-Headers-To-Remove")}
	}

	for name, headers := range map[string]map[string]string{
		"no key":             {},
		"x-api-key":          {"x-api-key": k.active},
		"both, agreeing":     {"authorization": "Bearer " + k.active, "x-api-key": k.active},
		"both, disagreeing":  {"authorization": "Bearer " + k.active, "x-api-key": k.zero},
		"api-key not listed": {"api-key": k.active},
		"zero balance":       {"authorization": "Bearer " + k.zero},
		"revoked":            {"x-api-key": k.revoked},
		"Basic":              {"authorization": "Basic dXNlcjpodW50ZXIy"},
	} {
		g, h := viaGRPC(headers), viaHTTP(headers)
		if g != h {
			t.Errorf("%s:\ngRPC %+v\nHTTP %+v", name, g, h)
		}
		if name == "x-api-key" && (g.status != 200 || g.account != k.accountID || g.removeFirst != "authorization, x-api-key") {
			t.Errorf("%s: %+v, want an allow stripping both headers", name, g)
		}
		if name == "zero balance" && !strings.HasPrefix(g.body, `{"type":"error"`) {
			t.Errorf("%s: body %s is not Anthropic-style", name, g.body)
		}
	}
	// A route's own settings override the defaults; over gRPC they travel
	// in context_extensions (see the envoy package's vectors).
	if got := viaHTTP(map[string]string{"authorization": "Bearer " + k.zero, "x-keygate-error-style": "openai"}); got.status != 403 || !strings.HasPrefix(got.body, `{"error":{"message":`) {
		t.Errorf("OpenAI route: %+v, want an OpenAI-style 403", got)
	}
	resp, err := http.Get("http://" + httpAddr + "/v1/messages")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("outside the prefix: %d, want 404", resp.StatusCode)
	}
	// Both endpoints count their checks on the one /metrics, apart.
	req, err := http.NewRequestWithContext(t.Context(), "GET", "http://"+s.admin+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, metrics := roundTrip(t, req)
	for _, want := range []string{
		`keygate_checks_total{api="grpc",decision="allow",reason="allowed"} 2`,
		`keygate_checks_total{api="http",decision="allow",reason="allowed"} 2`,
		`keygate_checks_total{api="grpc",decision="deny",reason="insufficient_balance"} 1`,
		`keygate_checks_total{api="http",decision="deny",reason="insufficient_balance"} 2`,
		`keygate_check_duration_seconds_count{api="grpc"} 8`,
		`keygate_check_duration_seconds_count{api="http"} 9`,
	} {
		if !strings.Contains(metrics, want+"\n") {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	s.stop()
}

// TestServeRejectsBadRouteFlags checks that a bad default route is a usage
// error, reported before anything is opened.
func TestServeRejectsBadRouteFlags(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin, err := keygateBinary()
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"--credential-headers", "authorization,x-api-kye"},
		{"--error-style", "xml"},
	} {
		cmd := exec.Command(bin, append([]string{"serve", "--db", filepath.Join(t.TempDir(), "k.db")}, args...)...)
		cmd.Env = cleanEnv()
		out, err := cmd.CombinedOutput()
		if code := cmd.ProcessState.ExitCode(); code != 2 || !strings.Contains(string(out), args[0]) {
			t.Errorf("serve %s: exit %d (%v), output %q; want exit 2 naming the flag", strings.Join(args, " "), code, err, out)
		}
	}
}
