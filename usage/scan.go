package usage

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// ErrMalformed is wrapped by the errors for a body that is not valid JSON or
// SSE, or whose usage or request fields have the wrong type.
var ErrMalformed = errors.New("usage: malformed body")

// ErrLimit is wrapped by the errors for a body that exceeds one of the
// parser's fixed limits (nesting depth, length of a model name).
var ErrLimit = errors.New("usage: body exceeds a parser limit")

const (
	// MaxDepth is the deepest nesting of JSON objects and arrays accepted.
	MaxDepth = 512
	// MaxModelLen is the longest response model name accepted, in bytes as
	// written in the JSON.
	MaxModelLen = 256

	trieDepth = 8  // containers whose trie node is tracked (the tries are 5 deep)
	maxNodes  = 48 // nodes in a trie
)

// kind is the JSON type of a captured value; kindNone means absent.
type kind uint8

const (
	kindNone kind = iota
	kindNull
	kindTrue
	kindFalse
	kindNumber
	kindString
	kindObject
	kindArray
)

// capture is what the scanner records about a value at a tracked path.
type capture struct {
	kind       kind
	intOK      bool  // a number that is an integer and fits in int64
	empty      bool  // an object or array without members
	num        int64 // the number, when intOK
	start, end int64 // offsets of the value's first byte and one past its last
}

// trie is the set of paths a scanner tracks, in depth-first order: node 0
// means "not tracked", node 1 is the root, and node i's subtree is
// [i, trie[i].end).
type trie []tnode

type tnode struct {
	key string
	end uint8
	str bool // keep the string value (it must fit in MaxModelLen)
}

// newTrie builds the trie of dot-separated paths below the root.
func newTrie(paths ...string) trie {
	type tmp struct {
		key  string
		kids []*tmp
	}
	root := &tmp{}
	for _, p := range paths {
		n := root
	keys:
		for _, k := range strings.Split(p, ".") {
			for _, c := range n.kids {
				if c.key == k {
					n = c
					continue keys
				}
			}
			c := &tmp{key: k}
			n.kids = append(n.kids, c)
			n = c
		}
	}
	t := trie{{}}
	var add func(n *tmp)
	add = func(n *tmp) {
		id := len(t)
		t = append(t, tnode{key: n.key})
		for _, c := range n.kids {
			add(c)
		}
		t[id].end = uint8(len(t))
	}
	add(root)
	if len(t) > maxNodes {
		panic("usage: trie larger than maxNodes")
	}
	return t
}

// child is the node for key in parent's object, or 0.
func (t trie) child(parent uint8, key []byte) uint8 {
	if parent == 0 {
		return 0
	}
	for c := parent + 1; c < t[parent].end; c = t[c].end {
		if t[c].key == string(key) {
			return c
		}
	}
	return 0
}

// node is the node of a dot-separated path that newTrie was given.
func (t trie) node(path string) uint8 {
	n := uint8(1)
	for _, k := range strings.Split(path, ".") {
		n = t.child(n, []byte(k))
	}
	return n
}

// scanState is where the scanner is in the JSON grammar.
type scanState uint8

const (
	sValue       scanState = iota // a value is expected
	sArrayFirst                   // after '[': a value or ']'
	sObjectFirst                  // after '{': a key or '}'
	sKey                          // after ',' in an object: a key
	sColon                        // after a key
	sAfter                        // after a member: ',' or the end of the container
	sString                       // in a string, key or value
	sEscape                       // after a backslash in a string
	sHex                          // in the four digits of \uXXXX
	sLiteral                      // in true, false or null
	sNumber                       // in a number
	sDone                         // the root object is complete: only whitespace may follow
	sSkip                         // the root is not an object: the rest is ignored
)

// number grammar states, after the byte named
const (
	nMinus = iota
	nZero
	nInt
	nDot
	nFrac
	nE
	nESign
	nExp
)

// scanner is an incremental JSON scanner that keeps a fixed amount of
// memory: it validates the document as bytes arrive in any chunks and
// records the values at the paths of its trie. A root that is not an object
// is skipped unvalidated. Duplicate keys follow encoding/json: the last wins.
type scanner struct {
	t      trie
	pos    int64 // offset of the next byte
	state  scanState
	depth  int
	arrays [MaxDepth / 64]uint64 // bit d: the container at depth d is an array
	nodes  [trieDepth]uint8      // trie node of the container at depth d
	caps   [maxNodes]capture     // by trie node
	cur    uint8                 // node of the value being scanned
	key    uint8                 // node named by the last key
	inKey  bool                  // the string being scanned is a key
	keep   bool                  // keep the current token's bytes in buf
	buf    [MaxModelLen]byte     // raw bytes of a kept key, string or number
	n      int                   // bytes in buf, MaxModelLen+1 when it overflowed
	hex    uint8                 // hex digits left in \uXXXX
	lit    string                // literal being matched
	litI   int                   // bytes of lit matched
	num    uint8                 // number grammar state
	str    [3 * MaxModelLen]byte // the last kept string, decoded
	strN   int                   // bytes in str
	keyBuf [3 * MaxModelLen]byte // a decoded key that had escapes
	strAt  uint8                 // node of str, 0 if none
}

// reset prepares s to scan a new document with trie t.
func (s *scanner) reset(t trie) {
	s.t = t
	s.pos, s.state, s.depth, s.strAt = 0, sValue, 0, 0
	s.caps = [maxNodes]capture{}
}

// done reports whether a root object was scanned completely.
func (s *scanner) done() bool { return s.state == sDone }

// started reports whether the document has a first value byte.
func (s *scanner) started() bool { return s.state != sValue || s.depth != 0 }

// capture is the value recorded at node n.
func (s *scanner) capture(n uint8) capture { return s.caps[n] }

// keptString is the string kept at node n, if it was the last kept.
func (s *scanner) keptString(n uint8) ([]byte, bool) {
	if s.strAt != n || n == 0 {
		return nil, false
	}
	return s.str[:s.strN], true
}

// write scans the next bytes of the document.
func (s *scanner) write(p []byte) error {
	base := s.pos
	s.pos += int64(len(p))
	for i := 0; i < len(p); i++ {
		switch s.state {
		case sSkip:
			return nil
		case sString: // the fast path over the bytes of a string
			j := i
			for j < len(p) && p[j] != '"' && p[j] != '\\' && p[j] >= 0x20 {
				j++
			}
			s.add(p[i:j]...)
			if i = j; i == len(p) {
				return nil
			}
		}
		if err := s.step(p[i], base+int64(i)); err != nil {
			return err
		}
	}
	return nil
}

// add appends bytes of the current token to buf when they are kept.
func (s *scanner) add(b ...byte) {
	if !s.keep {
		return
	}
	if s.n+len(b) > MaxModelLen {
		s.n = MaxModelLen + 1
		return
	}
	s.n += copy(s.buf[s.n:], b)
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func isHex(c byte) bool { return isDigit(c) || 'a' <= c|0x20 && c|0x20 <= 'f' }

func (s *scanner) fail(c byte, at int64) error {
	return fmt.Errorf("%w: unexpected %q at byte %d", ErrMalformed, c, at)
}

// step scans the byte c at offset at.
func (s *scanner) step(c byte, at int64) error {
	switch s.state {
	case sValue, sArrayFirst:
		if isSpace(c) {
			return nil
		}
		if c == ']' && s.state == sArrayFirst {
			return s.close(c, at)
		}
		return s.begin(c, at)
	case sObjectFirst, sKey:
		switch {
		case isSpace(c):
			return nil
		case c == '}' && s.state == sObjectFirst:
			return s.close(c, at)
		case c != '"':
			return s.fail(c, at)
		}
		s.inKey, s.keep, s.n, s.state = true, s.nodeAt(s.depth-1) != 0, 0, sString
	case sColon:
		switch {
		case isSpace(c):
		case c == ':':
			s.state = sValue
		default:
			return s.fail(c, at)
		}
	case sAfter:
		switch {
		case isSpace(c):
		case c == ',':
			if s.isArray(s.depth - 1) {
				s.state = sValue
			} else {
				s.state = sKey
			}
		default:
			return s.close(c, at)
		}
	case sString:
		switch {
		case c == '"':
			return s.endString(at)
		case c == '\\':
			s.state = sEscape
		case c < 0x20:
			return s.fail(c, at)
		}
		s.add(c)
	case sEscape:
		switch c {
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			s.state = sString
		case 'u':
			s.state, s.hex = sHex, 4
		default:
			return s.fail(c, at)
		}
		s.add(c)
	case sHex:
		if !isHex(c) {
			return s.fail(c, at)
		}
		s.add(c)
		if s.hex--; s.hex == 0 {
			s.state = sString
		}
	case sLiteral:
		if c != s.lit[s.litI] {
			return s.fail(c, at)
		}
		if s.litI++; s.litI == len(s.lit) {
			k := kindNull
			switch s.lit[0] {
			case 't':
				k = kindTrue
			case 'f':
				k = kindFalse
			}
			s.set(k, at+1)
			s.after()
		}
	case sNumber:
		return s.number(c, at)
	case sDone:
		if !isSpace(c) {
			return fmt.Errorf("%w: %q after the end of the JSON at byte %d", ErrMalformed, c, at)
		}
	}
	return nil
}

// nodeAt is the trie node of the container at depth d.
func (s *scanner) nodeAt(d int) uint8 {
	if d < 0 || d >= trieDepth {
		return 0
	}
	return s.nodes[d]
}

func (s *scanner) isArray(d int) bool { return s.arrays[d/64]&(1<<(d%64)) != 0 }

// begin starts the value whose first byte is c.
func (s *scanner) begin(c byte, at int64) error {
	switch {
	case s.depth == 0:
		if c != '{' {
			s.state = sSkip
			return nil
		}
		s.cur = 1
	case s.isArray(s.depth - 1):
		s.cur = 0
	default:
		s.cur = s.key
	}
	if n := s.cur; n != 0 { // a later duplicate key replaces the whole subtree
		for i := n; i < s.t[n].end; i++ {
			s.caps[i] = capture{}
		}
		if s.strAt >= n && s.strAt < s.t[n].end {
			s.strAt = 0
		}
		s.caps[n].start = at
	}
	switch {
	case c == '{' || c == '[':
		return s.open(c, at)
	case c == '"':
		s.inKey, s.keep, s.n, s.state = false, s.cur != 0 && s.t[s.cur].str, 0, sString
	case c == 't':
		s.lit, s.litI, s.state = "true", 1, sLiteral
	case c == 'f':
		s.lit, s.litI, s.state = "false", 1, sLiteral
	case c == 'n':
		s.lit, s.litI, s.state = "null", 1, sLiteral
	case c == '-' || isDigit(c):
		s.keep, s.n, s.state, s.num = s.cur != 0, 0, sNumber, nInt
		switch c {
		case '-':
			s.num = nMinus
		case '0':
			s.num = nZero
		}
		s.add(c)
	default:
		return s.fail(c, at)
	}
	return nil
}

// open starts an object or array.
func (s *scanner) open(c byte, at int64) error {
	if s.depth == MaxDepth {
		return fmt.Errorf("%w: nesting deeper than %d at byte %d", ErrLimit, MaxDepth, at)
	}
	bit := uint64(1) << (s.depth % 64)
	if c == '[' {
		s.arrays[s.depth/64] |= bit
		s.state = sArrayFirst
	} else {
		s.arrays[s.depth/64] &^= bit
		s.state = sObjectFirst
	}
	if s.depth < trieDepth {
		s.nodes[s.depth] = s.cur
	}
	s.depth++
	return nil
}

// close ends the innermost container with c, which must match it.
func (s *scanner) close(c byte, at int64) error {
	d := s.depth - 1
	arr := s.isArray(d)
	if arr && c != ']' || !arr && c != '}' {
		return s.fail(c, at)
	}
	empty := s.state == sObjectFirst || s.state == sArrayFirst
	s.depth = d
	if n := s.nodeAt(d); n != 0 {
		cp := &s.caps[n]
		cp.kind, cp.end, cp.empty = kindObject, at+1, empty
		if arr {
			cp.kind = kindArray
		}
	}
	s.after()
	return nil
}

// after moves past a complete value.
func (s *scanner) after() {
	if s.depth == 0 {
		s.state = sDone
	} else {
		s.state = sAfter
	}
}

// set records the kind and end of the scalar value being scanned.
func (s *scanner) set(k kind, end int64) {
	if s.cur != 0 {
		s.caps[s.cur].kind, s.caps[s.cur].end = k, end
	}
}

// endString ends a key or a string value at the closing quote at.
func (s *scanner) endString(at int64) error {
	if s.inKey {
		s.key = 0
		if s.keep && s.n <= MaxModelLen {
			key := s.buf[:s.n]
			if bytes.IndexByte(key, '\\') >= 0 { // rare
				key = unescape(s.keyBuf[:0], key)
			}
			s.key = s.t.child(s.nodeAt(s.depth-1), key)
		}
		s.state = sColon
		return nil
	}
	s.set(kindString, at+1)
	if s.keep {
		if s.n > MaxModelLen {
			return fmt.Errorf("%w: string %q longer than %d bytes at byte %d", ErrLimit, s.t[s.cur].key, MaxModelLen, s.caps[s.cur].start)
		}
		s.strN, s.strAt = len(unescape(s.str[:0], s.buf[:s.n])), s.cur
	}
	s.after()
	return nil
}

// number scans c inside a number, which ends at the first byte that cannot
// continue it.
func (s *scanner) number(c byte, at int64) error {
	next := uint8(255) // the number ends
	switch {
	case isDigit(c):
		switch s.num {
		case nMinus:
			next = nInt
			if c == '0' {
				next = nZero
			}
		case nInt:
			next = nInt
		case nDot, nFrac:
			next = nFrac
		case nE, nESign, nExp:
			next = nExp
		}
	case c == '.' && (s.num == nZero || s.num == nInt):
		next = nDot
	case (c == 'e' || c == 'E') && (s.num == nZero || s.num == nInt || s.num == nFrac):
		next = nE
	case (c == '+' || c == '-') && s.num == nE:
		next = nESign
	}
	if next != 255 {
		s.num = next
		s.add(c)
		return nil
	}
	if s.num != nZero && s.num != nInt && s.num != nFrac && s.num != nExp {
		return s.fail(c, at)
	}
	s.set(kindNumber, at)
	if s.cur != 0 && s.n <= MaxModelLen {
		s.caps[s.cur].num, s.caps[s.cur].intOK = parseInt(s.buf[:s.n])
	}
	s.after()
	return s.step(c, at)
}

// parseInt parses an optionally negative decimal integer that fits in int64.
func parseInt(b []byte) (int64, bool) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if !isDigit(c) || v > (1<<63)/10 {
			return 0, false
		}
		v = v*10 + uint64(c-'0')
	}
	switch {
	case neg && v <= 1<<63:
		return int64(-v), true // -(1<<63) wraps to itself
	case !neg && v < 1<<63:
		return int64(v), true
	}
	return 0, false
}

// unescape appends to dst the decoded contents of a valid JSON string
// (without its quotes), replacing invalid UTF-8 and lone surrogates with
// U+FFFD as encoding/json does. The result is at most 3×len(src) bytes.
func unescape(dst, src []byte) []byte {
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == '\\':
			r, n := unescapeOne(src[i:])
			dst = utf8.AppendRune(dst, r)
			i += n
		case c < utf8.RuneSelf:
			dst = append(dst, c)
			i++
		default:
			r, n := utf8.DecodeRune(src[i:])
			dst = utf8.AppendRune(dst, r) // RuneError for invalid bytes
			i += n
		}
	}
	return dst
}

// unescapeOne decodes the escape at the start of src.
func unescapeOne(src []byte) (rune, int) {
	switch src[1] {
	case 'b':
		return '\b', 2
	case 'f':
		return '\f', 2
	case 'n':
		return '\n', 2
	case 'r':
		return '\r', 2
	case 't':
		return '\t', 2
	case 'u':
	default: // '"', '\\' or '/'
		return rune(src[1]), 2
	}
	r := hex4(src[2:6])
	if utf16.IsSurrogate(r) {
		if len(src) >= 12 && src[6] == '\\' && src[7] == 'u' {
			if p := utf16.DecodeRune(r, hex4(src[8:12])); p != utf8.RuneError {
				return p, 12
			}
		}
		return utf8.RuneError, 6
	}
	return r, 6
}

func hex4(b []byte) rune {
	var r rune
	for _, c := range b {
		switch {
		case isDigit(c):
			r = r<<4 | rune(c-'0')
		default:
			r = r<<4 | rune(c|0x20-'a'+10)
		}
	}
	return r
}
