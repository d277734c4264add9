package sdktest

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	anthropicoption "github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/openai/openai-go/v3"
	openaioption "github.com/openai/openai-go/v3/option"

	"github.com/keygate/keygate/httpauth/proxytest"
)

// result is what one SDK request came to: the text, or the SDK's error.
type result struct {
	Text  string    `json:"text"`
	Error *sdkError `json:"error"`
}

// sdkError is what an SDK's error says: its class (Node) or type (Go), and
// the status, code and type it parsed from the answer.
type sdkError struct {
	Class  string `json:"class"`
	Status int    `json:"status"`
	Code   string `json:"code"`
	Type   string `json:"type"`
}

// client sends one request with one SDK: api is "openai" or "anthropic",
// stream asks for server-sent events, base is the proxy's URL.
type client func(t *testing.T, api string, stream bool, base, key string) result

func goSDK(t *testing.T, api string, stream bool, base, key string) result {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var text strings.Builder
	var err error
	if api == "openai" {
		c := openai.NewClient(openaioption.WithAPIKey(key), openaioption.WithBaseURL(base+"/v1/"))
		params := openai.ChatCompletionNewParams{Model: "gpt-4o-mini", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Say hello")}}
		if stream {
			s := c.Chat.Completions.NewStreaming(ctx, params)
			for s.Next() {
				if ch := s.Current().Choices; len(ch) > 0 {
					text.WriteString(ch[0].Delta.Content)
				}
			}
			err = s.Err()
		} else {
			var r *openai.ChatCompletion
			if r, err = c.Chat.Completions.New(ctx, params); err == nil {
				text.WriteString(r.Choices[0].Message.Content)
			}
		}
		var e *openai.Error
		if errors.As(err, &e) {
			return result{Error: &sdkError{"*openai.Error", e.StatusCode, e.Code, e.Type}}
		}
	} else {
		c := anthropic.NewClient(anthropicoption.WithAPIKey(key), anthropicoption.WithBaseURL(base+"/anthropic/"))
		params := anthropic.MessageNewParams{Model: "claude-sonnet-4-5", MaxTokens: 64, Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Say hello"))}}
		if stream {
			s := c.Messages.NewStreaming(ctx, params)
			for s.Next() {
				if ev := s.Current(); ev.Type == "content_block_delta" {
					text.WriteString(ev.Delta.Text)
				}
			}
			err = s.Err()
		} else {
			var m *anthropic.Message
			if m, err = c.Messages.New(ctx, params); err == nil {
				for _, b := range m.Content {
					text.WriteString(b.Text)
				}
			}
		}
		var e *anthropic.Error
		if errors.As(err, &e) {
			return result{Error: &sdkError{"*anthropic.Error", e.StatusCode, "", string(e.Type())}}
		}
	}
	if err != nil {
		t.Fatalf("%s SDK: %v", api, err)
	}
	return result{Text: text.String()}
}

// nodeSDK runs node/sdk.mjs, which needs npm ci in node/.
func nodeSDK(t *testing.T, api string, stream bool, base, key string) result {
	mode := "plain"
	if stream {
		mode = "stream"
	}
	url := base + "/v1"
	if api == "anthropic" {
		url = base + "/anthropic"
	}
	cmd := exec.CommandContext(t.Context(), "node", "sdk.mjs", api, mode, url, key)
	cmd.Dir = "node"
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("node sdk.mjs %s %s: %v\n%s", api, mode, err, stderr)
	}
	var r result
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("node sdk.mjs: %v in %s", err, out)
	}
	return r
}

// needNode skips (or in CI fails) when node or node/node_modules is missing.
func needNode(t *testing.T) {
	proxytest.Need(t, "node", "apt-get install nodejs npm")
	if _, err := os.Stat("node/node_modules/openai"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("node/node_modules is missing, but CI is set: run npm ci in sdktest/node")
		}
		t.Skip("node/node_modules is missing: run npm ci in sdktest/node; skipped outside CI")
	}
}

// denial is what an SDK must raise for a refused key.
type denial struct {
	nodeClass string // the Node SDK's error class
	status    int
	code      string // OpenAI's error.code
	oaiType   string // OpenAI's error.type
	anthType  string // Anthropic's error.type
}

var (
	unauthenticated = denial{"AuthenticationError", 401, "invalid_api_key", "invalid_request_error", "authentication_error"}
	noFunds         = denial{"PermissionDeniedError", 403, "insufficient_balance", "insufficient_quota", "permission_error"}
	disabled        = denial{"PermissionDeniedError", 403, "account_disabled", "permission_error", "permission_error"}
)

func TestSDKs(t *testing.T) {
	kg, k := startKeygate(t)
	api := newFakeAPI(t, firstToken)
	proxies := map[string]func(testing.TB, proxytest.Addrs) *proxytest.Proxy{"caddy": proxytest.Caddy, "nginx": proxytest.Nginx}
	for _, proxy := range []string{"caddy", "nginx"} {
		t.Run(proxy, func(t *testing.T) {
			p := proxies[proxy](t, proxytest.Addrs{Listen: freeAddr(t), Keygate: kg.httpAddr, Upstream: strings.TrimPrefix(api.URL, "http://")})
			for _, sdk := range []struct {
				name string
				run  client
			}{{"go", goSDK}, {"node", nodeSDK}} {
				t.Run(sdk.name, func(t *testing.T) {
					if sdk.name == "node" {
						needNode(t)
					}
					for _, family := range []string{"openai", "anthropic"} {
						t.Run(family, func(t *testing.T) { sdkCases(t, kg, api, p.URL, k, family, sdk.run) })
					}
				})
			}
		})
	}
}

// sdkCases sends every case with one SDK of one API family, and checks what
// the SDK returned, how many requests reached keygate and the API, and what
// the API saw.
func sdkCases(t *testing.T, kg *keygate, api *fakeAPI, base string, k keys, family string, run client) {
	want := strings.Join(words, "")
	for _, c := range []struct {
		name   string
		key    string
		stream bool
		deny   *denial
	}{
		{"valid key", k.valid, false, nil},
		{"valid key, streaming", k.valid, true, nil},
		{"unknown key", k.unknown, false, &unauthenticated},
		{"revoked key", k.revoked, false, &unauthenticated},
		{"zero balance", k.zero, false, &noFunds},
		{"disabled account", k.disabled, false, &disabled},
	} {
		t.Run(c.name, func(t *testing.T) {
			checks := kg.checks(t)
			calls, _ := api.requests()
			got := run(t, family, c.stream, base, c.key)
			n, seen := api.requests()
			// One check and, when allowed, one call: an SDK that retried a
			// 401 or 403 would show here.
			wantCalls := 0
			if c.deny == nil {
				wantCalls = 1
			}
			if d := kg.checks(t) - checks; d != 1 {
				t.Errorf("keygate answered %d checks, want 1", d)
			}
			if n-calls != wantCalls {
				t.Errorf("the API received %d requests, want %d", n-calls, wantCalls)
			}
			if c.deny == nil {
				if got.Error != nil || got.Text != want {
					t.Fatalf("got %+v, want the text %q", got, want)
				}
				if seen.Get("X-Account-Id") != k.accountID || seen.Get("X-Key-Id") != k.keyID {
					t.Errorf("the API saw x-account-id %q, x-key-id %q; want %q, %q", seen.Get("X-Account-Id"), seen.Get("X-Key-Id"), k.accountID, k.keyID)
				}
				for h, vs := range seen {
					for _, v := range vs {
						if strings.Contains(v, c.key) {
							t.Errorf("the API saw the key in %s", h)
						}
					}
				}
				return
			}
			wantErr := sdkError{Status: c.deny.status}
			isGo := got.Error != nil && strings.HasPrefix(got.Error.Class, "*")
			switch {
			case family == "openai" && isGo:
				wantErr.Class, wantErr.Code, wantErr.Type = "*openai.Error", c.deny.code, c.deny.oaiType
			case family == "openai":
				wantErr.Class, wantErr.Code, wantErr.Type = c.deny.nodeClass, c.deny.code, c.deny.oaiType
			case isGo:
				wantErr.Class, wantErr.Type = "*anthropic.Error", c.deny.anthType
			default:
				wantErr.Class, wantErr.Type = c.deny.nodeClass, c.deny.anthType
			}
			if got.Error == nil || *got.Error != wantErr {
				t.Errorf("got %+v, want the error %+v", got, wantErr)
			}
		})
	}
}
