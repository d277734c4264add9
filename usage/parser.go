package usage

import (
	"bytes"
	"fmt"
	"strings"
)

// Result is the usage a response reported.
type Result struct {
	// Model is the model the response names, "" when it names none.
	Model string
	// Tokens are the counts reported so far. When Found is false they may
	// be partial (Anthropic's message_start) or zero.
	Tokens Tokens
	// Found reports that the response's final usage was seen: the usage of
	// a JSON body, the usage chunk of an OpenAI stream, the usage of a
	// Responses API response.completed (or .incomplete, .failed) event, or
	// the usage of an Anthropic message_delta event.
	Found bool
}

// usageFields are the token counts read from a usage object.
var usageFields = [...]string{
	fPrompt:        "prompt_tokens",
	fCompletion:    "completion_tokens",
	fTotal:         "total_tokens",
	fInput:         "input_tokens",
	fOutput:        "output_tokens",
	fCacheRead:     "cache_read_input_tokens",
	fCacheCreation: "cache_creation_input_tokens",
	fPromptCached:  "prompt_tokens_details.cached_tokens",
	fInputCached:   "input_tokens_details.cached_tokens",
}

const (
	fPrompt = iota
	fCompletion
	fTotal
	fInput
	fOutput
	fCacheRead
	fCacheCreation
	fPromptCached
	fInputCached
	nFields
)

// counts a Parser keeps, and the fields that give each, first found first.
const (
	cPrompt     = iota // input tokens, cached ones included
	cCached            // the cached part of cPrompt
	cCacheRead         // cached input tokens in addition to cPrompt
	cCacheWrite        // input tokens written to a cache
	cOutput            //
	cTotal             //
	nCounts
)

var countFields = [nCounts][]int{
	cPrompt:     {fPrompt, fInput},
	cCached:     {fPromptCached, fInputCached},
	cCacheRead:  {fCacheRead},
	cCacheWrite: {fCacheCreation},
	cOutput:     {fCompletion, fOutput},
	cTotal:      {fTotal},
}

// usageAt are the nodes of a model and a usage object below one prefix.
type usageAt struct {
	prefix string
	final  bool // the usage is the response's last word, not a first count
	model  uint8
	fields [nFields]uint8
}

// responseTrie tracks the model and usage of every supported response and
// stream event; usageSets are its usage objects, in the order they apply:
// Anthropic's message_start (message.usage), then the top level (JSON
// bodies, OpenAI chunks, Anthropic message_delta), then the Responses API's
// events (response.usage).
var responseTrie, usageSets = func() (trie, [3]usageAt) {
	sets := [3]usageAt{{prefix: "message."}, {final: true}, {prefix: "response.", final: true}}
	var paths []string
	for _, u := range sets {
		paths = append(paths, u.prefix+"model")
		for _, f := range usageFields {
			paths = append(paths, u.prefix+"usage."+f)
		}
	}
	t := newTrie(paths...)
	for i := range sets {
		u := &sets[i]
		u.model = t.node(u.prefix + "model")
		t[u.model].str = true
		for f, name := range usageFields {
			u.fields[f] = t.node(u.prefix + "usage." + name)
		}
	}
	return t, sets
}()

// A Parser reads the usage from a response body given in chunks split at
// any byte. It holds a fixed amount of memory whatever the body's size: it
// never buffers a line, an event or a document, and rejects JSON nested
// deeper than MaxDepth and model names longer than MaxModelLen.
//
// A Server-Sent Events body is read as the WHATWG HTML standard says (a
// BOM, LF, CRLF and CR line ends, comments, multi-line data joined with LF,
// events dispatched at a blank line; an event the body ends inside of is
// not dispatched). A JSON body counts once its root object is complete.
// Event data or a body that is not a JSON object, such as "[DONE]", is
// ignored; a JSON object that is malformed is an error.
//
// Within a response, a later count replaces an earlier one (Anthropic's
// message_delta usage is cumulative), except that the input and cache
// counts keep their last non-zero value.
type Parser struct {
	sse       bool
	err       error
	sc        scanner
	committed bool // JSON: the body's usage was taken

	// SSE: the line being read
	line   lineState
	field  [len("data")]byte
	fieldN int  // bytes of the field name, len(field)+1 when it is longer
	space  bool // the next data byte may be the space after the colon
	lines  int  // data lines in the event
	cr     bool // the last byte was CR
	bom    int  // bytes of a BOM seen at the start, 3 after the start

	model  [3 * MaxModelLen]byte
	modelN int
	counts [nCounts]int64
	has    [nCounts]bool
	found  bool
}

type lineState uint8

const (
	lineStart  lineState = iota // at the start of a line
	lineField                   // in a field name
	lineData                    // in the value of a data field
	lineIgnore                  // in a comment or another field's value
)

// NewParser returns a Parser for a body of the given Content-Type: Server-
// Sent Events for text/event-stream, JSON for anything else.
func NewParser(contentType string) *Parser {
	p := new(Parser)
	p.Reset(contentType)
	return p
}

// Reset makes p ready for a new body of the given Content-Type, as
// NewParser does, without allocating.
func (p *Parser) Reset(contentType string) {
	mt, _, _ := strings.Cut(contentType, ";")
	*p = Parser{sse: strings.EqualFold(strings.TrimSpace(mt), "text/event-stream")}
	p.sc.reset(responseTrie)
}

// Write parses the next chunk of the body. After an error every later Write
// returns the same error, and Result keeps what was read before it.
func (p *Parser) Write(b []byte) error {
	if p.err != nil {
		return p.err
	}
	if p.sse {
		p.err = p.writeSSE(b)
	} else {
		p.err = p.writeJSON(b)
	}
	return p.err
}

// Result is the usage read so far.
func (p *Parser) Result() Result {
	prompt := p.counts[cPrompt]
	if !p.has[cPrompt] && p.has[cTotal] { // e.g. {"total_tokens": 10} of some embeddings APIs
		prompt = max(0, p.counts[cTotal]-p.counts[cOutput])
	}
	return Result{
		Model: string(p.model[:p.modelN]),
		Tokens: Tokens{
			Input:       max(0, prompt-p.counts[cCached]),
			CachedInput: addSat(p.counts[cCached], p.counts[cCacheRead]),
			CacheWrite:  p.counts[cCacheWrite],
			Output:      p.counts[cOutput],
		},
		Found: p.found,
	}
}

func (p *Parser) writeJSON(b []byte) error {
	err := p.sc.write(b)
	if p.sc.done() && !p.committed {
		p.committed = true
		if cerr := p.commit(); cerr != nil {
			return cerr
		}
	}
	return err
}

var bom = [3]byte{0xEF, 0xBB, 0xBF}

func (p *Parser) writeSSE(b []byte) error {
	for i := 0; i < len(b); i++ {
		c := b[i]
		if p.bom < len(bom) {
			if c == bom[p.bom] {
				p.bom++
				continue
			}
			if p.bom > 0 { // a broken BOM begins an unknown field name
				p.line, p.fieldN = lineField, len(p.field)+1
			}
			p.bom = len(bom)
		}
		if p.cr {
			if p.cr = false; c == '\n' {
				continue
			}
		}
		switch {
		case c == '\r' || c == '\n':
			p.cr = c == '\r'
			if err := p.endLine(); err != nil {
				return err
			}
		case p.line == lineData || p.line == lineIgnore:
			if p.space {
				if p.space = false; c == ' ' {
					continue
				}
			}
			j := i + lineEnd(b[i:])
			if p.line == lineData {
				if err := p.sc.write(b[i:j]); err != nil {
					return err
				}
			}
			i = j - 1
		case c == ':':
			p.line = lineIgnore
			if p.isData() {
				p.line, p.space = lineData, true
				if err := p.dataLine(); err != nil {
					return err
				}
			}
		default:
			p.line = lineField
			if p.fieldN < len(p.field) {
				p.field[p.fieldN] = c
			}
			p.fieldN = min(p.fieldN+1, len(p.field)+1)
		}
	}
	return nil
}

func (p *Parser) isData() bool { return p.fieldN == len(p.field) && string(p.field[:]) == "data" }

var lf = []byte{'\n'}

// lineEnd is the index of the first CR or LF in b, or len(b).
func lineEnd(b []byte) int {
	n := bytes.IndexByte(b, '\n')
	if n < 0 {
		n = len(b)
	}
	if r := bytes.IndexByte(b[:n], '\r'); r >= 0 {
		return r
	}
	return n
}

// dataLine starts a data line, joining it to an earlier one with LF.
func (p *Parser) dataLine() error {
	p.lines++
	if p.lines > 1 {
		return p.sc.write(lf)
	}
	return nil
}

// endLine ends a line: a blank one dispatches the event.
func (p *Parser) endLine() error {
	var err error
	switch {
	case p.line == lineStart:
		err = p.dispatch()
	case p.line == lineField && p.isData(): // "data" alone: an empty value
		err = p.dataLine()
	}
	p.line, p.fieldN, p.space = lineStart, 0, false
	return err
}

// dispatch takes the usage of the event's data, if it is a JSON object.
func (p *Parser) dispatch() error {
	if p.lines == 0 {
		return nil
	}
	p.lines = 0
	var err error
	switch {
	case p.sc.done():
		err = p.commit()
	case p.sc.state != sSkip && p.sc.started():
		err = fmt.Errorf("%w: an event's data ends inside its JSON", ErrMalformed)
	}
	p.sc.reset(responseTrie)
	return err
}

// commit adds the usage and model the scanner found in one document.
func (p *Parser) commit() error {
	var obs [len(usageSets)][nCounts]int64
	var has [len(usageSets)][nCounts]bool
	for s, u := range usageSets {
		for c, fields := range countFields {
			for _, f := range fields {
				cp := p.sc.capture(u.fields[f])
				if cp.kind == kindNone || cp.kind == kindNull {
					continue
				}
				if cp.kind != kindNumber || !cp.intOK || cp.num < 0 {
					return fmt.Errorf("%w: %susage.%s is not a non-negative integer", ErrMalformed, u.prefix, usageFields[f])
				}
				obs[s][c], has[s][c] = cp.num, true
				break
			}
		}
	}
	for s, u := range usageSets {
		if m, ok := p.sc.keptString(u.model); ok && len(m) > 0 {
			p.modelN = copy(p.model[:], m)
		}
		seen := false
		for c := range nCounts {
			if !has[s][c] {
				continue
			}
			seen = true
			if c == cOutput || c == cTotal || obs[s][c] != 0 || !p.has[c] {
				p.counts[c], p.has[c] = obs[s][c], true
			}
		}
		p.found = p.found || seen && u.final
	}
	return nil
}
