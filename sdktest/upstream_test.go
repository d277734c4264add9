package sdktest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// words are what the fake API answers, one streamed event each.
var words = []string{"Hello", " from", " behind", " keygate"}

// firstToken is the fake API's time to first token. Real APIs take hundreds
// of milliseconds; an answer within microseconds of the request trips a
// Caddy 2.6 bug that cuts streams (see the README's Caddy section).
const firstToken = 5 * time.Millisecond

// fakeAPI is a small LLM API: OpenAI's chat completions and Anthropic's
// messages, as JSON or as server-sent events. It records the headers of
// every request.
type fakeAPI struct {
	*httptest.Server
	mu   sync.Mutex
	seen []http.Header
}

func newFakeAPI(t *testing.T, delay time.Duration) *fakeAPI {
	f := new(fakeAPI)
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.seen = append(f.seen, r.Header.Clone())
		f.mu.Unlock()
		var req struct {
			Stream bool `json:"stream"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		time.Sleep(delay)
		anthropic := strings.HasSuffix(r.URL.Path, "/v1/messages")
		switch {
		case !strings.HasSuffix(r.URL.Path, "/v1/chat/completions") && !anthropic:
			http.NotFound(w, r)
		case req.Stream:
			stream(w, anthropic)
		case anthropic:
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{"type":"text","text":%q}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":3,"output_tokens":4}}`, strings.Join(words, ""))
		default:
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"id":"chatcmpl-1","object":"chat.completion","created":1772373600,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":%q},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}`, strings.Join(words, ""))
		}
	}))
	t.Cleanup(f.Close)
	return f
}

// stream answers with words as server-sent events, each flushed on its own.
func stream(w http.ResponseWriter, anthropic bool) {
	w.Header().Set("Content-Type", "text/event-stream")
	send := func(event, data string) {
		if event != "" {
			fmt.Fprintf(w, "event: %s\n", event)
		}
		fmt.Fprintf(w, "data: %s\n\n", data)
		w.(http.Flusher).Flush()
	}
	if anthropic {
		send("message_start", `{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":3,"output_tokens":1}}}`)
		send("content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`)
		for _, word := range words {
			send("content_block_delta", fmt.Sprintf(`{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":%q}}`, word))
		}
		send("content_block_stop", `{"type":"content_block_stop","index":0}`)
		send("message_delta", `{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":4}}`)
		send("message_stop", `{"type":"message_stop"}`)
		return
	}
	for _, word := range words {
		send("", fmt.Sprintf(`{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1772373600,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":%q},"finish_reason":null}]}`, word))
	}
	send("", `{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1772373600,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`)
	send("", "[DONE]")
}

// requests returns how many requests the API has received, and the headers
// of the last.
func (f *fakeAPI) requests() (int, http.Header) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.seen) == 0 {
		return 0, nil
	}
	return len(f.seen), f.seen[len(f.seen)-1]
}
