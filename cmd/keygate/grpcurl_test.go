package main

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/keygate/keygate/answer"
	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/httpauth/proxytest"
)

// TestGRPCurl calls the Check service with grpcurl, as the README's
// walkthrough does: through gRPC reflection, with requests written as JSON.
func TestGRPCurl(t *testing.T) {
	bin := proxytest.Need(t, "grpcurl", "go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.4")
	s := startServer(t, filepath.Join(t.TempDir(), "keygate.db"))
	k := makeKeys(t, s)
	grpcurl := func(args ...string) []byte {
		t.Helper()
		out, err := exec.Command(bin, append([]string{"-plaintext", "-max-time", "10"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("grpcurl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}

	services := strings.Fields(string(grpcurl(s.grpcAddr, "list")))
	if !slices.Contains(services, "envoy.service.auth.v3.Authorization") || !slices.Contains(services, "grpc.health.v1.Health") {
		t.Errorf("grpcurl list = %q, want the Authorization and Health services", services)
	}

	var resp grpcurlAnswer
	check := func(request string) {
		t.Helper()
		out := grpcurl("-d", request, s.grpcAddr, "envoy.service.auth.v3.Authorization/Check")
		resp = grpcurlAnswer{}
		if err := json.Unmarshal(out, &resp); err != nil {
			t.Fatalf("grpcurl printed %s: %v", out, err)
		}
	}

	check(`{"attributes":{"request":{"http":{"method":"POST","path":"/v1/chat/completions","headers":{"authorization":"Bearer ` + k.active + `"}}}}}`)
	ok := resp.OkResponse
	if resp.Status.Code != 0 || len(ok.Headers) != 2 ||
		ok.Headers[0].Header.Key != "x-account-id" || ok.Headers[0].Header.Value != k.accountID ||
		ok.Headers[1].Header.Key != "x-key-id" || ok.Headers[1].Header.Value != k.keyID ||
		ok.Headers[0].Append == nil || *ok.Headers[0].Append || ok.Headers[0].AppendAction != "OVERWRITE_IF_EXISTS_OR_ADD" ||
		!slices.Equal(ok.HeadersToRemove, []string{"authorization"}) ||
		resp.DynamicMetadata["decision"] != "allow" || resp.DynamicMetadata["account_id"] != k.accountID {
		t.Errorf("allow: %+v", resp)
	}

	// An Anthropic-style route, as Envoy's per-route context_extensions set it.
	check(`{"attributes":{"request":{"http":{"headers":{"x-api-key":"` + k.zero + `"}}},` +
		`"contextExtensions":{"keygate_credentials":"x-api-key","keygate_error_style":"anthropic"}}}`)
	denied := resp.DeniedResponse
	if d := answer.DenialFor(authz.ReasonInsufficientBalance, authz.Route{Style: authz.StyleAnthropic}); resp.Status.Code != 7 ||
		denied.Status.Code != "Forbidden" || denied.Body != d.Body ||
		resp.DynamicMetadata["reason"] != "insufficient_balance" {
		t.Errorf("zero balance on an Anthropic route: %+v", resp)
	}
	s.stop()
}

// grpcurlAnswer is the part of a CheckResponse, as grpcurl prints it in
// proto3 JSON, that TestGRPCurl reads.
type grpcurlAnswer struct {
	Status     struct{ Code int }
	OkResponse struct {
		Headers         []grpcurlHeader
		HeadersToRemove []string
	}
	DeniedResponse struct {
		Status  struct{ Code string }
		Headers []grpcurlHeader
		Body    string
	}
	DynamicMetadata map[string]string
}

type grpcurlHeader struct {
	Header       struct{ Key, Value string }
	Append       *bool
	AppendAction string
}
