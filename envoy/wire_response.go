package envoy

import (
	"bytes"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/keygate/keygate/authz"
)

// Encoded answers. The wire path answers from bytes encoded once per
// reason and route: as they are when the answer names no key, and as a
// template when it does. Account and key ids have a fixed length, so a
// template is the answer encoded with stand-in ids of that length, and an
// answer is a copy of it with the real ids written over the stand-ins: no
// length prefix changes. An id of any other length falls back to
// proto.Marshal.

// Stand-in ids: the lengths of real ids, bytes that no other part of an
// answer holds.
var (
	standInAccount = authz.AccountIDPrefix + strings.Repeat("\x01", len(authz.NewAccountID(time.Unix(0, 0)))-len(authz.AccountIDPrefix))
	standInKey     = authz.KeyIDPrefix + strings.Repeat("\x02", len(authz.NewKeyID(time.Unix(0, 0)))-len(authz.KeyIDPrefix))
)

// template is the encoding of one answer, and where its ids go.
type template struct {
	b        []byte
	accounts []int // offsets of the account id
	keys     []int // offsets of the key id
}

// templates holds the templates of every reason and route, built on first
// use. A route is identified by its style and sources.
type templates struct {
	mu    sync.Mutex // serializes building
	byKey []atomic.Pointer[template]
}

const (
	numStyles     = int(authz.NumStyles)
	numSourceSets = authz.NumSourceSets
)

func newTemplates() *templates {
	return &templates{byKey: make([]atomic.Pointer[template], int(authz.NumReasons)*numStyles*numSourceSets*2)}
}

// key indexes the answers to d: its reason, its route, and whether it names
// a key. ok is false for answers that have no template: an unknown route, or
// ids of an unexpected length.
func (t *templates) key(d authz.Decision) (k int, ok bool) {
	if int(d.Route.Style) >= numStyles || int(d.Route.Sources) >= numSourceSets {
		return 0, false
	}
	k = ((int(d.Reason)*numStyles+int(d.Route.Style))*numSourceSets + int(d.Route.Sources)) * 2
	switch {
	case k >= len(t.byKey):
		return 0, false
	case d.KeyID == "" && d.AccountID == "":
		return k, true
	case len(d.AccountID) == len(standInAccount) && len(d.KeyID) == len(standInKey):
		return k + 1, true
	}
	return 0, false
}

// appendAnswer appends the encoded answer to d, which o decided, to dst.
func (t *templates) appendAnswer(dst []byte, o *outcome, d authz.Decision) ([]byte, error) {
	k, ok := t.key(d)
	if !ok {
		return proto.MarshalOptions{}.MarshalAppend(dst, o.respond(d))
	}
	tp := t.byKey[k].Load()
	if tp == nil {
		var err error
		if tp, err = t.build(k, o, d); err != nil {
			return nil, err
		}
	}
	n := len(dst)
	dst = append(dst, tp.b...)
	for _, i := range tp.accounts {
		copy(dst[n+i:], d.AccountID)
	}
	for _, i := range tp.keys {
		copy(dst[n+i:], d.KeyID)
	}
	return dst, nil
}

// build makes the template of answers like d.
func (t *templates) build(k int, o *outcome, d authz.Decision) (*template, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if tp := t.byKey[k].Load(); tp != nil {
		return tp, nil
	}
	if d.KeyID != "" || d.AccountID != "" {
		d.AccountID, d.KeyID = standInAccount, standInKey
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(o.respond(d))
	if err != nil {
		return nil, err
	}
	tp := &template{b: b, accounts: offsets(b, standInAccount), keys: offsets(b, standInKey)}
	t.byKey[k].Store(tp)
	return tp, nil
}

// offsets returns where s occurs in b.
func offsets(b []byte, s string) []int {
	var at []int
	for i := 0; ; {
		j := bytes.Index(b[i:], []byte(s))
		if j < 0 {
			return at
		}
		at = append(at, i+j)
		i += j + len(s)
	}
}
