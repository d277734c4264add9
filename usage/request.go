package usage

import (
	"bytes"
	"fmt"
	"unicode/utf8"
)

// Request is what metering needs from a request body.
type Request struct {
	// Model is the model asked for, "" when the body names none.
	Model string
	// Stream reports "stream": true.
	Stream bool
	// IncludeUsage reports "stream_options": {"include_usage": true}.
	IncludeUsage bool
	// MaxOutputTokens is the largest of max_tokens, max_completion_tokens
	// and max_output_tokens, 0 when none is given.
	MaxOutputTokens int64
}

var requestTrie = newTrie("model", "stream", "stream_options.include_usage",
	"max_tokens", "max_completion_tokens", "max_output_tokens", "messages", "prompt", "input")

var (
	rRoot          = uint8(1)
	rModel         = requestTrie.node("model")
	rStream        = requestTrie.node("stream")
	rStreamOptions = requestTrie.node("stream_options")
	rIncludeUsage  = requestTrie.node("stream_options.include_usage")
	rMessages      = requestTrie.node("messages")
	rPrompt        = requestTrie.node("prompt")
	rInput         = requestTrie.node("input")
	rMaxTokens     = [...]uint8{
		requestTrie.node("max_tokens"),
		requestTrie.node("max_completion_tokens"),
		requestTrie.node("max_output_tokens"),
	}
)

// ParseRequest reads the request body of an OpenAI Chat Completions,
// Completions, Responses or Embeddings call or an Anthropic Messages call.
// A body that is not a JSON object, or whose fields above have the wrong
// type, is an error.
func ParseRequest(body []byte) (Request, error) {
	var sc scanner
	if err := scanRequest(&sc, body); err != nil {
		return Request{}, err
	}
	var r Request
	var err error
	switch m := sc.capture(rModel); m.kind {
	case kindNone, kindNull:
	case kindString:
		r.Model = decodeString(body[m.start+1 : m.end-1])
	default:
		return Request{}, fmt.Errorf("%w: model is not a string", ErrMalformed)
	}
	if r.Stream, err = boolField(sc.capture(rStream), "stream"); err != nil {
		return Request{}, err
	}
	if r.IncludeUsage, err = boolField(sc.capture(rIncludeUsage), "stream_options.include_usage"); err != nil {
		return Request{}, err
	}
	for _, n := range rMaxTokens {
		switch cp := sc.capture(n); {
		case cp.kind == kindNone || cp.kind == kindNull:
		case cp.kind == kindNumber && cp.intOK && cp.num >= 0:
			r.MaxOutputTokens = max(r.MaxOutputTokens, cp.num)
		default:
			return Request{}, fmt.Errorf("%w: %s is not a non-negative integer", ErrMalformed, requestTrie[n].key)
		}
	}
	return r, nil
}

// IncludeUsage returns body with "stream_options": {"include_usage": true}
// when it is a streamed OpenAI Chat Completions or Completions request
// ("stream": true, with "messages" or "prompt" and no "input") that does not
// ask for usage already, and reports whether it changed it; otherwise, and
// on an error, it returns body itself. An explicit "include_usage": false is
// overridden, since a stream without usage cannot be billed. The change is
// one insertion or replacement: every other byte stays as it was.
//
// An Anthropic Messages body has the same shape and rejects the option, so
// call it only for OpenAI-style routes.
func IncludeUsage(body []byte) ([]byte, bool, error) {
	var sc scanner
	if err := scanRequest(&sc, body); err != nil {
		return body, false, err
	}
	chat := sc.capture(rMessages).kind != kindNone || sc.capture(rPrompt).kind != kindNone
	if sc.capture(rStream).kind != kindTrue || !chat || sc.capture(rInput).kind != kindNone {
		return body, false, nil
	}
	iu, so := sc.capture(rIncludeUsage), sc.capture(rStreamOptions)
	switch {
	case iu.kind == kindTrue:
		return body, false, nil
	case iu.kind != kindNone: // false, null or another type
		return splice(body, iu.start, iu.end, `true`), true, nil
	case so.kind == kindObject && so.empty:
		return splice(body, so.start+1, so.start+1, `"include_usage":true`), true, nil
	case so.kind == kindObject:
		return splice(body, so.start+1, so.start+1, `"include_usage":true,`), true, nil
	case so.kind != kindNone: // null or not an object
		return splice(body, so.start, so.end, `{"include_usage":true}`), true, nil
	}
	at := sc.capture(rRoot).start + 1 // the root is not empty: it has "stream"
	return splice(body, at, at, `"stream_options":{"include_usage":true},`), true, nil
}

// scanRequest scans a whole request body, which must be one JSON object.
func scanRequest(sc *scanner, body []byte) error {
	sc.reset(requestTrie)
	if err := sc.write(body); err != nil {
		return fmt.Errorf("request body: %w", err)
	}
	switch {
	case sc.state == sSkip || !sc.started():
		return fmt.Errorf("%w: request body is not a JSON object", ErrMalformed)
	case !sc.done():
		return fmt.Errorf("%w: request body ends inside its JSON", ErrMalformed)
	}
	return nil
}

// boolField is a boolean field's value; absent and null are false.
func boolField(cp capture, name string) (bool, error) {
	switch cp.kind {
	case kindNone, kindNull, kindFalse:
		return false, nil
	case kindTrue:
		return true, nil
	}
	return false, fmt.Errorf("%w: %s is not a boolean", ErrMalformed, name)
}

// decodeString decodes the contents of a valid JSON string.
func decodeString(raw []byte) string {
	if bytes.IndexByte(raw, '\\') < 0 && utf8.Valid(raw) {
		return string(raw)
	}
	return string(unescape(make([]byte, 0, 3*len(raw)), raw))
}

// splice returns a copy of b with b[start:end] replaced by s.
func splice(b []byte, start, end int64, s string) []byte {
	out := make([]byte, 0, int64(len(b))-(end-start)+int64(len(s)))
	out = append(out, b[:start]...)
	out = append(out, s...)
	return append(out, b[end:]...)
}
