package authz

import (
	"crypto/rand"
	"encoding/binary"
	"sync"
	"time"
)

// Id prefixes. An id is its prefix followed by 26 characters of Crockford
// base32: 48 bits of creation time in milliseconds, then 80 random bits. Ids
// made by one process sort in creation order (within a millisecond the
// random part counts up), so lists page in that order.
const (
	AccountIDPrefix = "acct_"
	KeyIDPrefix     = "key_"
	idBodyLen       = 26
)

// Id lengths.
const (
	AccountIDLen = len(AccountIDPrefix) + idBodyLen
	KeyIDLen     = len(KeyIDPrefix) + idBodyLen
)

const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// NewAccountID returns a fresh account id created at t.
func NewAccountID(t time.Time) string { return newID(AccountIDPrefix, t) }

// NewKeyID returns a fresh key id created at t.
func NewKeyID(t time.Time) string { return newID(KeyIDPrefix, t) }

// ValidAccountID reports whether s is shaped like an account id.
func ValidAccountID(s string) bool { return validID(AccountIDPrefix, s) }

// ValidKeyID reports whether s is shaped like a key id.
func ValidKeyID(s string) bool { return validID(KeyIDPrefix, s) }

// ValidateAccountID returns an EInvalid error unless id is shaped like an
// account id.
func ValidateAccountID(id string) error {
	if !ValidAccountID(id) {
		return Errorf(EInvalid, "%s is not an account id (%q and 26 base32 characters)", Quote(id), AccountIDPrefix)
	}
	return nil
}

// ValidateKeyID returns an EInvalid error unless id is shaped like a key id.
func ValidateKeyID(id string) error {
	if !ValidKeyID(id) {
		return Errorf(EInvalid, "%s is not a key id (%q and 26 base32 characters)", Quote(id), KeyIDPrefix)
	}
	return nil
}

// lastID is the newest id made by this process, for monotonic ids.
var lastID struct {
	sync.Mutex
	hi, lo uint64
}

func newID(prefix string, t time.Time) string {
	var raw [16]byte
	binary.BigEndian.PutUint64(raw[0:8], uint64(t.UnixMilli())<<16)
	rand.Read(raw[6:16])
	hi := binary.BigEndian.Uint64(raw[0:8])
	lo := binary.BigEndian.Uint64(raw[8:16])
	lastID.Lock()
	if hi>>16 == lastID.hi>>16 && (hi < lastID.hi || hi == lastID.hi && lo <= lastID.lo) {
		// Same millisecond: count up from the last id.
		hi, lo = lastID.hi, lastID.lo+1
		if lo == 0 {
			hi++
		}
	}
	lastID.hi, lastID.lo = hi, lo
	lastID.Unlock()
	b := make([]byte, len(prefix)+idBodyLen)
	copy(b, prefix)
	body := b[len(prefix):]
	for i := idBodyLen - 1; i >= 0; i-- {
		body[i] = crockford[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(b)
}

func validID(prefix, s string) bool {
	if len(s) != len(prefix)+idBodyLen || s[:len(prefix)] != prefix {
		return false
	}
	for i := len(prefix); i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'A' <= c && c <= 'Z' && c != 'I' && c != 'L' && c != 'O' && c != 'U') {
			return false
		}
	}
	return true
}
