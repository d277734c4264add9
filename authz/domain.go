package authz

import (
	"context"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// AccountStatus says whether an account's keys may be used.
type AccountStatus uint8

// Account statuses. The zero value is not a valid status.
const (
	AccountActive AccountStatus = iota + 1
	AccountDisabled
)

// Validate checks a status asked for by SetAccountStatus.
func (s AccountStatus) Validate() error {
	if s != AccountActive && s != AccountDisabled {
		return Errorf(EInvalid, "an account status is active or disabled, got %s", s)
	}
	return nil
}

func (s AccountStatus) String() string {
	switch s {
	case AccountActive:
		return "active"
	case AccountDisabled:
		return "disabled"
	}
	return "unknown"
}

// Account owns keys and a balance. Balance is an integer in whatever unit the
// operator chooses; it may go to or below zero through debits.
type Account struct {
	ID         string
	Name       string
	Balance    int64
	Status     AccountStatus
	CreateTime time.Time
	UpdateTime time.Time
}

// Key is an API key as the store keeps it: never the secret, only its hash
// and a hint. Zero times mean "not set" (no expiry, never revoked, never used).
type Key struct {
	ID           string
	AccountID    string
	Name         string
	Hash         KeyHash
	Hint         string
	CreateTime   time.Time
	ExpireTime   time.Time
	RevokeTime   time.Time
	LastUsedTime time.Time
	// ReplacedBy is the id of the key that a rotation issued in its place.
	ReplacedBy string
}

// KeyState is what a key can do at a given moment.
type KeyState uint8

// Key states.
const (
	KeyActive KeyState = iota + 1
	KeyExpired
	KeyRevoked
)

func (s KeyState) String() string {
	switch s {
	case KeyActive:
		return "active"
	case KeyExpired:
		return "expired"
	case KeyRevoked:
		return "revoked"
	}
	return "unknown"
}

// State returns the key's state at now.
func (k Key) State(now time.Time) KeyState {
	switch {
	case !k.RevokeTime.IsZero():
		return KeyRevoked
	case !k.ExpireTime.IsZero() && !now.Before(k.ExpireTime):
		return KeyExpired
	}
	return KeyActive
}

// LedgerKind says what changed a balance.
type LedgerKind uint8

// Ledger entry kinds.
const (
	LedgerOpen   LedgerKind = iota + 1 // the opening balance of a new account
	LedgerCredit                       // a top-up
	LedgerDebit                        // recorded usage
)

func (k LedgerKind) String() string {
	switch k {
	case LedgerOpen:
		return "open"
	case LedgerCredit:
		return "credit"
	case LedgerDebit:
		return "debit"
	}
	return "unknown"
}

// LedgerEntry records one change of an account's balance. Amount is always
// positive; Kind gives its sign. An account's balance is the sum of its
// ledger; an account opened with a zero balance has no LedgerOpen entry.
type LedgerEntry struct {
	AccountID      string
	Seq            uint64 // 1 for the first entry of an account, then one more each time
	Kind           LedgerKind
	Amount         int64
	BalanceAfter   int64
	IdempotencyKey string
	KeyID          string // the key the usage is attributed to, if any
	CreateTime     time.Time
}

// Page asks for one page of a list. A zero Size means DefaultPageSize.
type Page struct {
	Size  int
	Token string
}

// Page sizes.
const (
	DefaultPageSize = 50
	MaxPageSize     = 1000
)

// Validate checks a page request. Its token is checked by the list it
// came from.
func (p Page) Validate() error {
	if p.Size < 0 {
		return Errorf(EInvalid, "page size must not be negative, got %d", p.Size)
	}
	return nil
}

// Limit is the number of items a valid page lists: DefaultPageSize for a
// zero Size, at most MaxPageSize (larger sizes are lowered, as AIP-158
// recommends).
func (p Page) Limit() int {
	if p.Size == 0 {
		return DefaultPageSize
	}
	return min(p.Size, MaxPageSize)
}

// Store keeps accounts, keys and ledgers durably: a call that returns without
// error has been committed, and the next LookupKey sees it.
//
// Every method validates its input and returns an *Error with EInvalid,
// ENotFound or EConflict when the request cannot be honoured.
type Store interface {
	KeyIndex

	CreateAccount(ctx context.Context, name string, openingBalance int64) (Account, error)
	Account(ctx context.Context, id string) (Account, error)
	Accounts(ctx context.Context, page Page) (accounts []Account, next string, err error)
	SetAccountStatus(ctx context.Context, id string, status AccountStatus) (Account, error)
	// ChangeBalance applies a credit or debit. When the change carries an
	// idempotency key already used on the account with the same kind and
	// amount, it returns the first entry and changes nothing; with another
	// kind or amount it fails with EConflict.
	ChangeBalance(ctx context.Context, change BalanceChange) (LedgerEntry, error)
	Ledger(ctx context.Context, accountID string, page Page) (entries []LedgerEntry, next string, err error)

	// CreateKey stores a new key. The caller makes the secret; the store
	// sees only its hash and hint.
	CreateKey(ctx context.Context, k NewKey) (Key, error)
	Key(ctx context.Context, id string) (Key, error)
	Keys(ctx context.Context, accountID string, page Page) (keys []Key, next string, err error)
	// RevokeKey revokes a key; revoking a revoked key returns it unchanged.
	RevokeKey(ctx context.Context, id string) (Key, error)
	// RotateKey issues a replacement for an active key, with the same
	// account and name and the replacement's expiry (none if zero). The old
	// key expires after grace, or is revoked at once when grace is zero.
	// Revoked, expired and already rotated keys cannot be rotated (EConflict).
	RotateKey(ctx context.Context, id string, grace time.Duration, replacement NewKey) (old, created Key, err error)

	Close() error
}

// NewAccount describes an account to create.
type NewAccount struct {
	Name    string
	Balance int64 // the opening balance: zero or more
}

// Validate checks a new account.
func (a NewAccount) Validate() error {
	if err := ValidateName("account name", a.Name); err != nil {
		return err
	}
	if a.Balance < 0 {
		return Errorf(EInvalid, "opening balance must not be negative, got %d", a.Balance)
	}
	return nil
}

// ValidateGrace checks the grace period of a rotation.
func ValidateGrace(grace time.Duration) error {
	if grace < 0 {
		return Errorf(EInvalid, "grace period must not be negative, got %s", grace)
	}
	return nil
}

// BalanceChange asks for a credit or debit.
type BalanceChange struct {
	AccountID      string
	Kind           LedgerKind // LedgerCredit or LedgerDebit
	Amount         int64
	IdempotencyKey string
	KeyID          string // optional, debits only
}

// NewKey describes a key to create. For RotateKey only Hash, Hint and
// ExpireTime are used: the replacement keeps the old key's account and name.
type NewKey struct {
	AccountID  string
	Name       string
	ExpireTime time.Time
	Hash       KeyHash
	Hint       string
}

// Limits on user-supplied text.
const (
	MaxNameLen           = 200
	MaxIdempotencyKeyLen = 200
)

// ValidateName checks a display name: non-empty, valid UTF-8, no control
// characters (nor line separators or bidirectional overrides), at most
// MaxNameLen bytes.
func ValidateName(what, name string) error {
	switch {
	case strings.TrimSpace(name) == "":
		return Errorf(EInvalid, "%s must not be empty", what)
	case len(name) > MaxNameLen:
		return Errorf(EInvalid, "%s is longer than %d bytes", what, MaxNameLen)
	case !utf8.ValidString(name):
		return Errorf(EInvalid, "%s is not valid UTF-8", what)
	}
	if i := strings.IndexFunc(name, isControl); i >= 0 {
		r, _ := utf8.DecodeRuneInString(name[i:])
		return Errorf(EInvalid, "%s contains a control character (%U at byte %d)", what, r, i)
	}
	return nil
}

// isControl reports whether r is a control character (C0, DEL, C1), a line
// or paragraph separator, or a bidirectional embedding, override or
// isolate, which can make a name display as another.
func isControl(r rune) bool {
	return unicode.IsControl(r) || r == '\u2028' || r == '\u2029' ||
		'\u202a' <= r && r <= '\u202e' || '\u2066' <= r && r <= '\u2069'
}

// Validate checks a balance change before it reaches a store.
func (c *BalanceChange) Validate() error {
	if err := ValidateAccountID(c.AccountID); err != nil {
		return err
	}
	if c.Kind != LedgerCredit && c.Kind != LedgerDebit {
		return Errorf(EInvalid, "a balance change is a credit or a debit")
	}
	if c.Amount <= 0 {
		return Errorf(EInvalid, "amount must be positive, got %d", c.Amount)
	}
	if c.IdempotencyKey != "" {
		if err := ValidateName("idempotency key", c.IdempotencyKey); err != nil {
			return err
		}
	}
	if c.KeyID != "" {
		if c.Kind != LedgerDebit {
			return Errorf(EInvalid, "only a debit is attributed to a key")
		}
		if err := ValidateKeyID(c.KeyID); err != nil {
			return err
		}
	}
	return nil
}

// Validate checks a new key at now.
func (k *NewKey) Validate(now time.Time) error {
	if err := ValidateAccountID(k.AccountID); err != nil {
		return err
	}
	if err := ValidateName("key name", k.Name); err != nil {
		return err
	}
	if !k.ExpireTime.IsZero() && !k.ExpireTime.After(now) {
		return Errorf(EInvalid, "expire time %s is not in the future", k.ExpireTime.UTC().Format(time.RFC3339))
	}
	if k.Hash == (KeyHash{}) || k.Hint == "" {
		return Errorf(EInvalid, "a new key needs its hash and hint")
	}
	return nil
}
