// Package storetest is a conformance suite for authz.Store implementations.
// A store passes it by calling Run from its own tests.
package storetest

import (
	"context"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/authz"
)

// Start is the time every test's Clock starts at.
var Start = time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)

// Store is what the suite tests: an authz.Store that can check that its
// records agree with each other.
type Store interface {
	authz.Store
	// Verify returns the disagreements of the store's records and indexes
	// (record.Verify).
	Verify(ctx context.Context) error
}

// Run runs the conformance suite against the stores open returns. Each
// test calls open, from parallel tests, for a new, empty store whose clock
// is now; open must close the store when t ends (t.Cleanup). When a test
// ends, before the store is closed, the suite checks it with Verify.
//
// Besides the authz.Store contract the suite pins down the choices authz
// leaves to a store, so that every store behaves alike:
//
//   - An account opened with a positive balance has one LedgerOpen entry
//     (seq 1); one opened at zero has an empty ledger.
//   - A debit attributed to a key that is not a key of its account is
//     EInvalid.
//   - RotateKey gives the new key the replacement's ExpireTime, and refuses
//     (EConflict) a key that was already rotated.
//   - Key and Keys show the newest time given to MarkUsed at once.
//   - A list's last page has no next token, even when it is full.
func Run(t *testing.T, open func(t *testing.T, now func() time.Time) Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, e *env)
	}{
		{"CreateAccount", testCreateAccount},
		{"CreateAccountInvalid", testCreateAccountInvalid},
		{"AccountNotFound", testAccountNotFound},
		{"ListAccounts", testListAccounts},
		{"AccountStatus", testAccountStatus},
		{"CreditDebit", testCreditDebit},
		{"BalanceOverflow", testBalanceOverflow},
		{"Idempotency", testIdempotency},
		{"DebitAttributedToKey", testDebitAttributedToKey},
		{"ChangeBalanceInvalid", testChangeBalanceInvalid},
		{"LedgerPages", testLedgerPages},
		{"CreateKey", testCreateKey},
		{"CreateKeyInvalid", testCreateKeyInvalid},
		{"ListKeys", testListKeys},
		{"RevokeKey", testRevokeKey},
		{"RotateKeyWithGrace", testRotateKeyWithGrace},
		{"RotateKeyAtOnce", testRotateKeyAtOnce},
		{"RotateKeyRefused", testRotateKeyRefused},
		{"KeyExpiry", testKeyExpiry},
		{"MarkUsed", testMarkUsed},
		{"Concurrency", testConcurrency},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clock := NewClock(Start)
			s := open(t, clock.Now)
			t.Cleanup(func() { // before open's Close
				if err := s.Verify(context.Background()); err != nil {
					t.Errorf("Verify: %v", err)
				}
			})
			tt.fn(t, &env{Store: s, clock: clock, ctx: t.Context()})
		})
	}
}

// env is what one test works with.
type env struct {
	authz.Store
	clock *Clock
	ctx   context.Context
}

func (e *env) account(t *testing.T, balance int64) authz.Account {
	t.Helper()
	a, err := e.CreateAccount(e.ctx, "acme", balance)
	if err != nil {
		t.Fatalf("CreateAccount: %v", err)
	}
	return a
}

func (e *env) key(t *testing.T, accountID string) authz.Key {
	t.Helper()
	k, err := e.CreateKey(e.ctx, NewKey(accountID))
	if err != nil {
		t.Fatalf("CreateKey: %v", err)
	}
	return k
}

func (e *env) change(t *testing.T, c authz.BalanceChange) authz.LedgerEntry {
	t.Helper()
	entry, err := e.ChangeBalance(e.ctx, c)
	if err != nil {
		t.Fatalf("ChangeBalance(%+v): %v", c, err)
	}
	return entry
}

func (e *env) lookup(t *testing.T, h authz.KeyHash) authz.IndexedKey {
	t.Helper()
	c, found, err := e.LookupKey(e.ctx, h)
	if err != nil || !found {
		t.Fatalf("LookupKey = found %t, %v; want found", found, err)
	}
	return c
}

func (e *env) getAccount(t *testing.T, id string) authz.Account {
	t.Helper()
	a, err := e.Account(e.ctx, id)
	if err != nil {
		t.Fatalf("Account(%s): %v", id, err)
	}
	return a
}

func (e *env) getKey(t *testing.T, id string) authz.Key {
	t.Helper()
	k, err := e.Key(e.ctx, id)
	if err != nil {
		t.Fatalf("Key(%s): %v", id, err)
	}
	return k
}

// ledger returns the whole ledger of an account, read in pages of two, and
// checks that it adds up: seqs count from 1, amounts are positive, each
// BalanceAfter is the running sum, and the sum is the account's balance.
func (e *env) ledger(t *testing.T, accountID string) []authz.LedgerEntry {
	t.Helper()
	all := collect(t, 2, func(p authz.Page) ([]authz.LedgerEntry, string, error) {
		return e.Ledger(e.ctx, accountID, p)
	})
	var sum int64
	for i, l := range all {
		switch l.Kind {
		case authz.LedgerOpen, authz.LedgerCredit:
			sum += l.Amount
		case authz.LedgerDebit:
			sum -= l.Amount
		default:
			t.Errorf("entry %d has kind %s", l.Seq, l.Kind)
		}
		if l.Seq != uint64(i+1) || l.Amount <= 0 || l.BalanceAfter != sum || l.AccountID != accountID {
			t.Errorf("entry %d of %d = %+v; want seq %d, a positive amount, balance after %d", i, len(all), l, i+1, sum)
		}
	}
	if a := e.getAccount(t, accountID); a.Balance != sum {
		t.Errorf("balance %d, ledger sums to %d", a.Balance, sum)
	}
	return all
}

// collect reads every page of a list, checking that only the last page has
// no next token and that no page is larger than size.
func collect[T any](t *testing.T, size int, list func(authz.Page) ([]T, string, error)) []T {
	t.Helper()
	var all []T
	p := authz.Page{Size: size}
	for {
		items, next, err := list(p)
		if err != nil {
			t.Fatalf("list %+v: %v", p, err)
		}
		if len(items) > size || next != "" && len(items) != size {
			t.Fatalf("list %+v: %d items, next %q", p, len(items), next)
		}
		all = append(all, items...)
		if next == "" {
			return all
		}
		p.Token = next
	}
}

// NewKey returns a NewKey for a fresh secret, named "ci".
func NewKey(accountID string) authz.NewKey {
	secret := authz.NewSecret()
	return authz.NewKey{
		AccountID: accountID,
		Name:      "ci",
		Hash:      authz.HashSecret(secret),
		Hint:      authz.SecretHint(secret),
	}
}

func wantCode(t *testing.T, what string, err error, code authz.ErrorCode) {
	t.Helper()
	if got := authz.Code(err); got != code {
		t.Errorf("%s: error %v (code %q), want code %q", what, err, got, code)
	}
}

// Stores may return times in any location and without monotonic readings:
// compare them at nanosecond precision in UTC.
func normTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return time.Unix(0, t.UnixNano()).UTC()
}

func normAccount(a authz.Account) authz.Account {
	a.CreateTime, a.UpdateTime = normTime(a.CreateTime), normTime(a.UpdateTime)
	return a
}

func normKey(k authz.Key) authz.Key {
	k.CreateTime, k.ExpireTime = normTime(k.CreateTime), normTime(k.ExpireTime)
	k.RevokeTime, k.LastUsedTime = normTime(k.RevokeTime), normTime(k.LastUsedTime)
	return k
}

func normEntry(l authz.LedgerEntry) authz.LedgerEntry {
	l.CreateTime = normTime(l.CreateTime)
	return l
}

func normIndexedKey(c authz.IndexedKey) authz.IndexedKey {
	c.ExpireTime = normTime(c.ExpireTime)
	return c
}

// equal compares two values after norm, reporting a difference.
func equal[T comparable](t *testing.T, what string, got, want T, norm func(T) T) {
	t.Helper()
	if norm(got) != norm(want) {
		t.Errorf("%s:\n got %+v\nwant %+v", what, got, want)
	}
}

func equalSlices[T comparable](t *testing.T, what string, got, want []T, norm func(T) T) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: got %d items, want %d", what, len(got), len(want))
		return
	}
	for i := range got {
		equal(t, fmt.Sprintf("%s[%d]", what, i), got[i], want[i], norm)
	}
}

func testCreateAccount(t *testing.T, e *env) {
	a, err := e.CreateAccount(e.ctx, "Acme Corp", 100)
	if err != nil {
		t.Fatal(err)
	}
	now := e.clock.Now()
	want := authz.Account{ID: a.ID, Name: "Acme Corp", Balance: 100, Status: authz.AccountActive, CreateTime: now, UpdateTime: now}
	equal(t, "created", a, want, normAccount)
	if !authz.ValidAccountID(a.ID) {
		t.Errorf("id %q is not an account id", a.ID)
	}
	equal(t, "read back", e.getAccount(t, a.ID), want, normAccount)
	open := authz.LedgerEntry{AccountID: a.ID, Seq: 1, Kind: authz.LedgerOpen, Amount: 100, BalanceAfter: 100, CreateTime: now}
	equalSlices(t, "ledger", e.ledger(t, a.ID), []authz.LedgerEntry{open}, normEntry)

	empty := e.account(t, 0)
	if l := e.ledger(t, empty.ID); len(l) != 0 {
		t.Errorf("ledger of an account opened at zero = %+v, want none", l)
	}
}

func testCreateAccountInvalid(t *testing.T, e *env) {
	for _, name := range []string{"", "  ", "a\nb", strings.Repeat("n", authz.MaxNameLen+1), "\xff"} {
		_, err := e.CreateAccount(e.ctx, name, 0)
		wantCode(t, fmt.Sprintf("CreateAccount(%q)", name), err, authz.EInvalid)
	}
	_, err := e.CreateAccount(e.ctx, "acme", -1)
	wantCode(t, "negative opening balance", err, authz.EInvalid)
	if as, _, err := e.Accounts(e.ctx, authz.Page{}); err != nil || len(as) != 0 {
		t.Errorf("Accounts = %v, %v; want none", as, err)
	}
}

func testAccountNotFound(t *testing.T, e *env) {
	unknown := authz.NewAccountID(e.clock.Now())
	for _, c := range []struct {
		id   string
		code authz.ErrorCode
	}{{unknown, authz.ENotFound}, {"acct_nope", authz.EInvalid}, {"", authz.EInvalid}} {
		_, err := e.Account(e.ctx, c.id)
		wantCode(t, "Account("+c.id+")", err, c.code)
		_, err = e.SetAccountStatus(e.ctx, c.id, authz.AccountDisabled)
		wantCode(t, "SetAccountStatus("+c.id+")", err, c.code)
		_, _, err = e.Ledger(e.ctx, c.id, authz.Page{})
		wantCode(t, "Ledger("+c.id+")", err, c.code)
		_, _, err = e.Keys(e.ctx, c.id, authz.Page{})
		wantCode(t, "Keys("+c.id+")", err, c.code)
		_, err = e.CreateKey(e.ctx, NewKey(c.id))
		wantCode(t, "CreateKey("+c.id+")", err, c.code)
		_, err = e.ChangeBalance(e.ctx, authz.BalanceChange{AccountID: c.id, Kind: authz.LedgerCredit, Amount: 1})
		wantCode(t, "ChangeBalance("+c.id+")", err, c.code)
	}
}

func testListAccounts(t *testing.T, e *env) {
	var want []authz.Account
	for range 7 {
		want = append(want, e.account(t, 1))
		e.clock.Advance(time.Millisecond) // ids sort by creation millisecond
	}
	equalSlices(t, "pages of 3", collect(t, 3, func(p authz.Page) ([]authz.Account, string, error) {
		return e.Accounts(e.ctx, p)
	}), want, normAccount)

	all, next, err := e.Accounts(e.ctx, authz.Page{})
	if err != nil || next != "" {
		t.Fatalf("default page: next %q, %v", next, err)
	}
	equalSlices(t, "default page", all, want, normAccount)

	first, next, err := e.Accounts(e.ctx, authz.Page{Size: 7})
	if err != nil || len(first) != 7 || next != "" {
		t.Errorf("exact page: %d accounts, next %q, %v; want 7, no next", len(first), next, err)
	}
	_, next, _ = e.Accounts(e.ctx, authz.Page{Size: 2})
	again, _, err := e.Accounts(e.ctx, authz.Page{Size: 2, Token: next})
	if err != nil || len(again) != 2 || again[0].ID != want[2].ID {
		t.Errorf("second page = %v, %v; want accounts 2 and 3", again, err)
	}

	for _, p := range []authz.Page{{Size: -1}, {Token: "garbage"}, {Token: authz.NewKeyID(Start)}} {
		_, _, err := e.Accounts(e.ctx, p)
		wantCode(t, fmt.Sprintf("Accounts(%+v)", p), err, authz.EInvalid)
	}
}

func testAccountStatus(t *testing.T, e *env) {
	a := e.account(t, 10)
	k1, k2 := e.key(t, a.ID), e.key(t, a.ID)
	other := e.key(t, e.account(t, 10).ID)
	e.clock.Advance(time.Minute)

	d, err := e.SetAccountStatus(e.ctx, a.ID, authz.AccountDisabled)
	if err != nil {
		t.Fatal(err)
	}
	want := a
	want.Status, want.UpdateTime = authz.AccountDisabled, e.clock.Now()
	equal(t, "disabled", d, want, normAccount)
	equal(t, "read back", e.getAccount(t, a.ID), want, normAccount)
	for _, k := range []authz.Key{k1, k2} {
		if !e.lookup(t, k.Hash).AccountDisabled {
			t.Errorf("key %s: LookupKey does not show the account disabled", k.ID)
		}
	}
	if e.lookup(t, other.Hash).AccountDisabled {
		t.Errorf("disabling an account disabled another account's key")
	}
	if again, err := e.SetAccountStatus(e.ctx, a.ID, authz.AccountDisabled); err != nil || again.Status != authz.AccountDisabled {
		t.Errorf("disabling twice = %+v, %v", again, err)
	}

	if _, err := e.SetAccountStatus(e.ctx, a.ID, authz.AccountActive); err != nil {
		t.Fatal(err)
	}
	for _, k := range []authz.Key{k1, k2} {
		if e.lookup(t, k.Hash).AccountDisabled {
			t.Errorf("key %s: LookupKey shows the enabled account disabled", k.ID)
		}
	}
	for _, s := range []authz.AccountStatus{0, 3} {
		_, err := e.SetAccountStatus(e.ctx, a.ID, s)
		wantCode(t, fmt.Sprintf("SetAccountStatus(%d)", s), err, authz.EInvalid)
	}
}

func testCreditDebit(t *testing.T, e *env) {
	a := e.account(t, 100)
	k := e.key(t, a.ID)
	e.clock.Advance(time.Second)

	credit := e.change(t, authz.BalanceChange{AccountID: a.ID, Kind: authz.LedgerCredit, Amount: 50})
	want := authz.LedgerEntry{AccountID: a.ID, Seq: 2, Kind: authz.LedgerCredit, Amount: 50, BalanceAfter: 150, CreateTime: e.clock.Now()}
	equal(t, "credit", credit, want, normEntry)
	if c := e.lookup(t, k.Hash); c.Balance != 150 {
		t.Errorf("LookupKey balance after credit = %d, want 150", c.Balance)
	}

	// A debit may take the balance to zero and below.
	for _, step := range []struct{ amount, after int64 }{{150, 0}, {30, -30}} {
		d := e.change(t, authz.BalanceChange{AccountID: a.ID, Kind: authz.LedgerDebit, Amount: step.amount})
		if d.Kind != authz.LedgerDebit || d.BalanceAfter != step.after {
			t.Errorf("debit %d = %+v, want balance after %d", step.amount, d, step.after)
		}
		if c := e.lookup(t, k.Hash); c.Balance != step.after {
			t.Errorf("LookupKey balance = %d, want %d", c.Balance, step.after)
		}
	}
	got := e.getAccount(t, a.ID)
	if got.Balance != -30 || !normTime(got.UpdateTime).Equal(e.clock.Now()) {
		t.Errorf("account = %+v, want balance -30 updated now", got)
	}
	if l := e.ledger(t, a.ID); len(l) != 4 {
		t.Errorf("ledger has %d entries, want 4", len(l))
	}
}

func testBalanceOverflow(t *testing.T, e *env) {
	a := e.account(t, math.MaxInt64)
	k := e.key(t, a.ID)
	_, err := e.ChangeBalance(e.ctx, authz.BalanceChange{AccountID: a.ID, Kind: authz.LedgerCredit, Amount: 1, IdempotencyKey: "k"})
	wantCode(t, "credit past MaxInt64", err, authz.EInvalid)
	if got := e.getAccount(t, a.ID); got.Balance != math.MaxInt64 || e.lookup(t, k.Hash).Balance != math.MaxInt64 {
		t.Errorf("balance after a refused credit = %d", got.Balance)
	}

	for _, want := range []int64{0, -math.MaxInt64} {
		e.change(t, authz.BalanceChange{AccountID: a.ID, Kind: authz.LedgerDebit, Amount: math.MaxInt64})
		if got := e.getAccount(t, a.ID); got.Balance != want {
			t.Fatalf("balance = %d, want %d", got.Balance, want)
		}
	}
	e.change(t, authz.BalanceChange{AccountID: a.ID, Kind: authz.LedgerDebit, Amount: 1})
	_, err = e.ChangeBalance(e.ctx, authz.BalanceChange{AccountID: a.ID, Kind: authz.LedgerDebit, Amount: 1})
	wantCode(t, "debit past MinInt64", err, authz.EInvalid)
	if got := e.getAccount(t, a.ID); got.Balance != math.MinInt64 || e.lookup(t, k.Hash).Balance != math.MinInt64 {
		t.Errorf("balance after a refused debit = %d, want MinInt64", got.Balance)
	}
	if l := e.ledger(t, a.ID); len(l) != 4 {
		t.Errorf("ledger has %d entries, want 4", len(l))
	}

	// The refused credit did not use up its idempotency key.
	c := e.change(t, authz.BalanceChange{AccountID: a.ID, Kind: authz.LedgerCredit, Amount: 2, IdempotencyKey: "k"})
	if c.BalanceAfter != math.MinInt64+2 {
		t.Errorf("credit after refusals = %+v", c)
	}
}

func testIdempotency(t *testing.T, e *env) {
	a := e.account(t, 0)
	k1, k2 := e.key(t, a.ID), e.key(t, a.ID)
	topUp := authz.BalanceChange{AccountID: a.ID, Kind: authz.LedgerCredit, Amount: 100, IdempotencyKey: "top-up 1"}
	first := e.change(t, topUp)
	if first.IdempotencyKey != "top-up 1" {
		t.Errorf("entry = %+v, want its idempotency key", first)
	}
	e.clock.Advance(time.Hour)
	equal(t, "replay", e.change(t, topUp), first, normEntry)

	conflicts := []authz.BalanceChange{
		{AccountID: a.ID, Kind: authz.LedgerCredit, Amount: 101, IdempotencyKey: "top-up 1"},
		{AccountID: a.ID, Kind: authz.LedgerDebit, Amount: 100, IdempotencyKey: "top-up 1"},
	}
	use := authz.BalanceChange{AccountID: a.ID, Kind: authz.LedgerDebit, Amount: 7, IdempotencyKey: "req-9", KeyID: k1.ID}
	firstUse := e.change(t, use)
	equal(t, "replayed debit", e.change(t, use), firstUse, normEntry)
	for _, keyID := range []string{k2.ID, ""} {
		c := use
		c.KeyID = keyID
		conflicts = append(conflicts, c)
	}
	for _, c := range conflicts {
		_, err := e.ChangeBalance(e.ctx, c)
		wantCode(t, fmt.Sprintf("conflicting replay %+v", c), err, authz.EConflict)
	}
	if got := e.getAccount(t, a.ID); got.Balance != 93 {
		t.Errorf("balance = %d, want 93", got.Balance)
	}
	if l := e.ledger(t, a.ID); len(l) != 2 {
		t.Errorf("ledger has %d entries, want 2", len(l))
	}

	// Keys are scoped to the account.
	b := e.account(t, 0)
	other := topUp
	other.AccountID, other.Amount = b.ID, 5
	if got := e.change(t, other); got.AccountID != b.ID || got.BalanceAfter != 5 {
		t.Errorf("same idempotency key on another account = %+v", got)
	}
}

func testDebitAttributedToKey(t *testing.T, e *env) {
	a := e.account(t, 10)
	k := e.key(t, a.ID)
	foreign := e.key(t, e.account(t, 10).ID)

	d := e.change(t, authz.BalanceChange{AccountID: a.ID, Kind: authz.LedgerDebit, Amount: 3, KeyID: k.ID})
	if d.KeyID != k.ID {
		t.Errorf("debit = %+v, want key %s", d, k.ID)
	}
	for _, keyID := range []string{foreign.ID, authz.NewKeyID(Start)} {
		_, err := e.ChangeBalance(e.ctx, authz.BalanceChange{AccountID: a.ID, Kind: authz.LedgerDebit, Amount: 1, KeyID: keyID})
		wantCode(t, "debit attributed to "+keyID, err, authz.EInvalid)
	}
	// A revoked key's usage can still be recorded: it was allowed when made.
	if _, err := e.RevokeKey(e.ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	e.change(t, authz.BalanceChange{AccountID: a.ID, Kind: authz.LedgerDebit, Amount: 1, KeyID: k.ID})
	if got := e.getAccount(t, a.ID); got.Balance != 6 {
		t.Errorf("balance = %d, want 6", got.Balance)
	}
}

func testChangeBalanceInvalid(t *testing.T, e *env) {
	a := e.account(t, 10)
	k := e.key(t, a.ID)
	long := strings.Repeat("i", authz.MaxIdempotencyKeyLen+1)
	for _, c := range []authz.BalanceChange{
		{AccountID: a.ID, Kind: authz.LedgerCredit, Amount: 0},
		{AccountID: a.ID, Kind: authz.LedgerDebit, Amount: -5},
		{AccountID: a.ID, Kind: authz.LedgerOpen, Amount: 5},
		{AccountID: a.ID, Kind: 0, Amount: 5},
		{AccountID: a.ID, Kind: authz.LedgerCredit, Amount: 5, KeyID: k.ID},
		{AccountID: a.ID, Kind: authz.LedgerDebit, Amount: 5, KeyID: "key_nope"},
		{AccountID: a.ID, Kind: authz.LedgerCredit, Amount: 5, IdempotencyKey: long},
		{AccountID: a.ID, Kind: authz.LedgerCredit, Amount: 5, IdempotencyKey: "a\x00b"},
	} {
		_, err := e.ChangeBalance(e.ctx, c)
		wantCode(t, fmt.Sprintf("ChangeBalance(%+v)", c), err, authz.EInvalid)
	}
	if got := e.getAccount(t, a.ID); got.Balance != 10 {
		t.Errorf("balance = %d, want 10", got.Balance)
	}
}

func testLedgerPages(t *testing.T, e *env) {
	a := e.account(t, 5)
	var want []authz.LedgerEntry
	want = append(want, e.ledger(t, a.ID)...)
	for i := range 6 {
		kind := authz.LedgerCredit
		if i%2 == 1 {
			kind = authz.LedgerDebit
		}
		want = append(want, e.change(t, authz.BalanceChange{AccountID: a.ID, Kind: kind, Amount: int64(i + 1)}))
	}
	equalSlices(t, "ledger", e.ledger(t, a.ID), want, normEntry)
	equalSlices(t, "pages of 3", collect(t, 3, func(p authz.Page) ([]authz.LedgerEntry, string, error) {
		return e.Ledger(e.ctx, a.ID, p)
	}), want, normEntry)
	for _, p := range []authz.Page{{Size: -1}, {Token: "x"}, {Token: "-1"}} {
		_, _, err := e.Ledger(e.ctx, a.ID, p)
		wantCode(t, fmt.Sprintf("Ledger(%+v)", p), err, authz.EInvalid)
	}
}

func testCreateKey(t *testing.T, e *env) {
	a := e.account(t, 42)
	nk := NewKey(a.ID)
	nk.Name = "production"
	nk.ExpireTime = e.clock.Now().Add(24 * time.Hour)
	k, err := e.CreateKey(e.ctx, nk)
	if err != nil {
		t.Fatal(err)
	}
	want := authz.Key{ID: k.ID, AccountID: a.ID, Name: "production", Hash: nk.Hash, Hint: nk.Hint,
		CreateTime: e.clock.Now(), ExpireTime: nk.ExpireTime}
	equal(t, "created", k, want, normKey)
	if !authz.ValidKeyID(k.ID) {
		t.Errorf("id %q is not a key id", k.ID)
	}
	equal(t, "read back", e.getKey(t, k.ID), want, normKey)
	equal(t, "credential", e.lookup(t, nk.Hash),
		authz.IndexedKey{KeyID: k.ID, AccountID: a.ID, ExpireTime: nk.ExpireTime, Balance: 42}, normIndexedKey)

	if _, found, err := e.LookupKey(e.ctx, authz.HashSecret(authz.NewSecret())); found || err != nil {
		t.Errorf("LookupKey of an unknown key = found %t, %v", found, err)
	}
}

func testCreateKeyInvalid(t *testing.T, e *env) {
	a := e.account(t, 0)
	taken := e.key(t, a.ID)
	b := e.account(t, 0)
	for _, c := range []struct {
		what string
		edit func(*authz.NewKey)
		code authz.ErrorCode
	}{
		{"empty name", func(k *authz.NewKey) { k.Name = "" }, authz.EInvalid},
		{"expired", func(k *authz.NewKey) { k.ExpireTime = e.clock.Now() }, authz.EInvalid},
		{"no hash", func(k *authz.NewKey) { k.Hash = authz.KeyHash{} }, authz.EInvalid},
		{"no hint", func(k *authz.NewKey) { k.Hint = "" }, authz.EInvalid},
		{"hash of a key", func(k *authz.NewKey) { k.Hash = taken.Hash }, authz.EConflict},
		{"hash of another account's key", func(k *authz.NewKey) { k.AccountID, k.Hash = b.ID, taken.Hash }, authz.EConflict},
	} {
		nk := NewKey(a.ID)
		c.edit(&nk)
		_, err := e.CreateKey(e.ctx, nk)
		wantCode(t, c.what, err, c.code)
	}
	for _, c := range []struct {
		id   string
		code authz.ErrorCode
	}{{authz.NewKeyID(Start), authz.ENotFound}, {"key_nope", authz.EInvalid}, {a.ID, authz.EInvalid}} {
		_, err := e.Key(e.ctx, c.id)
		wantCode(t, "Key("+c.id+")", err, c.code)
		_, err = e.RevokeKey(e.ctx, c.id)
		wantCode(t, "RevokeKey("+c.id+")", err, c.code)
		_, _, err = e.RotateKey(e.ctx, c.id, 0, NewKey(a.ID))
		wantCode(t, "RotateKey("+c.id+")", err, c.code)
	}
	if ks, _, err := e.Keys(e.ctx, a.ID, authz.Page{}); err != nil || len(ks) != 1 {
		t.Errorf("Keys = %d keys, %v; want 1", len(ks), err)
	}
}

func testListKeys(t *testing.T, e *env) {
	a, b, empty := e.account(t, 0), e.account(t, 0), e.account(t, 0)
	var want []authz.Key
	for range 5 {
		want = append(want, e.key(t, a.ID))
		e.key(t, b.ID)
		e.clock.Advance(time.Millisecond)
	}
	equalSlices(t, "pages of 2", collect(t, 2, func(p authz.Page) ([]authz.Key, string, error) {
		return e.Keys(e.ctx, a.ID, p)
	}), want, normKey)
	if ks, next, err := e.Keys(e.ctx, empty.ID, authz.Page{}); err != nil || len(ks) != 0 || next != "" {
		t.Errorf("Keys of an account without keys = %v, %q, %v", ks, next, err)
	}
	for _, p := range []authz.Page{{Size: -1}, {Token: "nope"}, {Token: a.ID}} {
		_, _, err := e.Keys(e.ctx, a.ID, p)
		wantCode(t, fmt.Sprintf("Keys(%+v)", p), err, authz.EInvalid)
	}
}

func testRevokeKey(t *testing.T, e *env) {
	a := e.account(t, 1)
	k, sibling := e.key(t, a.ID), e.key(t, a.ID)
	e.clock.Advance(time.Minute)

	r, err := e.RevokeKey(e.ctx, k.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := k
	want.RevokeTime = e.clock.Now()
	equal(t, "revoked", r, want, normKey)
	if !e.lookup(t, k.Hash).Revoked {
		t.Error("LookupKey does not show the key revoked right after RevokeKey")
	}
	if r.State(e.clock.Now()) != authz.KeyRevoked {
		t.Errorf("state = %s", r.State(e.clock.Now()))
	}
	if e.lookup(t, sibling.Hash).Revoked {
		t.Error("revoking a key revoked its sibling")
	}

	e.clock.Advance(time.Minute)
	again, err := e.RevokeKey(e.ctx, k.ID)
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "revoked twice", again, want, normKey)
	equal(t, "read back", e.getKey(t, k.ID), want, normKey)
}

func testRotateKeyWithGrace(t *testing.T, e *env) {
	a := e.account(t, 1)
	k := e.key(t, a.ID)
	e.clock.Advance(time.Minute)
	now := e.clock.Now()

	repl := NewKey("ignored")
	repl.Name = "ignored"
	old, created, err := e.RotateKey(e.ctx, k.ID, time.Hour, repl)
	if err != nil {
		t.Fatal(err)
	}
	wantOld := k
	wantOld.ExpireTime, wantOld.ReplacedBy = now.Add(time.Hour), created.ID
	equal(t, "old key", old, wantOld, normKey)
	wantNew := authz.Key{ID: created.ID, AccountID: a.ID, Name: k.Name, Hash: repl.Hash, Hint: repl.Hint, CreateTime: now}
	equal(t, "new key", created, wantNew, normKey)
	equal(t, "old read back", e.getKey(t, k.ID), wantOld, normKey)
	equal(t, "new read back", e.getKey(t, created.ID), wantNew, normKey)

	if c := e.lookup(t, k.Hash); c.Revoked || !normTime(c.ExpireTime).Equal(now.Add(time.Hour)) {
		t.Errorf("old credential = %+v, want expiring in an hour", c)
	}
	if c := e.lookup(t, repl.Hash); c.KeyID != created.ID || c.AccountID != a.ID || !c.ExpireTime.IsZero() {
		t.Errorf("new credential = %+v", c)
	}

	e.clock.Advance(time.Hour)
	if k := e.getKey(t, k.ID); k.State(e.clock.Now()) != authz.KeyExpired {
		t.Errorf("old key after the grace period is %s, want expired", k.State(e.clock.Now()))
	}
	if ks, _, _ := e.Keys(e.ctx, a.ID, authz.Page{}); len(ks) != 2 {
		t.Errorf("account has %d keys, want 2", len(ks))
	}

	// An earlier expiry is kept; the replacement's expiry is used.
	soon := e.clock.Now().Add(10 * time.Minute)
	nk := NewKey(a.ID)
	nk.ExpireTime = soon
	k2, err := e.CreateKey(e.ctx, nk)
	if err != nil {
		t.Fatal(err)
	}
	repl = NewKey(a.ID)
	repl.ExpireTime = e.clock.Now().Add(48 * time.Hour)
	old, created, err = e.RotateKey(e.ctx, k2.ID, time.Hour, repl)
	if err != nil {
		t.Fatal(err)
	}
	if !normTime(old.ExpireTime).Equal(soon) || !normTime(e.lookup(t, k2.Hash).ExpireTime).Equal(soon) {
		t.Errorf("old expiry = %s, want the earlier %s", old.ExpireTime, soon)
	}
	if !normTime(created.ExpireTime).Equal(repl.ExpireTime) {
		t.Errorf("new expiry = %s, want %s", created.ExpireTime, repl.ExpireTime)
	}
}

func testRotateKeyAtOnce(t *testing.T, e *env) {
	a := e.account(t, 1)
	k := e.key(t, a.ID)
	e.clock.Advance(time.Minute)
	repl := NewKey(a.ID)
	old, created, err := e.RotateKey(e.ctx, k.ID, 0, repl)
	if err != nil {
		t.Fatal(err)
	}
	wantOld := k
	wantOld.RevokeTime, wantOld.ReplacedBy = e.clock.Now(), created.ID
	equal(t, "old key", old, wantOld, normKey)
	if !e.lookup(t, k.Hash).Revoked {
		t.Error("LookupKey does not show the old key revoked right after RotateKey")
	}
	if c := e.lookup(t, repl.Hash); c.Revoked || c.KeyID != created.ID {
		t.Errorf("new credential = %+v", c)
	}
	_, _, err = e.RotateKey(e.ctx, k.ID, 0, NewKey(a.ID))
	wantCode(t, "rotating the rotated key", err, authz.EConflict)
}

func testRotateKeyRefused(t *testing.T, e *env) {
	a := e.account(t, 1)
	revoked := e.key(t, a.ID)
	if _, err := e.RevokeKey(e.ctx, revoked.ID); err != nil {
		t.Fatal(err)
	}
	nk := NewKey(a.ID)
	nk.ExpireTime = e.clock.Now().Add(time.Minute)
	expired, err := e.CreateKey(e.ctx, nk)
	if err != nil {
		t.Fatal(err)
	}
	inGrace := e.key(t, a.ID)
	if _, _, err := e.RotateKey(e.ctx, inGrace.ID, 24*time.Hour, NewKey(a.ID)); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Minute)
	active := e.key(t, a.ID)
	before := map[string]authz.Key{}
	for _, k := range []authz.Key{revoked, expired, inGrace, active} {
		before[k.ID] = e.getKey(t, k.ID)
	}

	for _, c := range []struct {
		what  string
		id    string
		grace time.Duration
		repl  authz.NewKey
		code  authz.ErrorCode
	}{
		{"revoked", revoked.ID, 0, NewKey(a.ID), authz.EConflict},
		{"expired", expired.ID, time.Hour, NewKey(a.ID), authz.EConflict},
		{"already rotated", inGrace.ID, 0, NewKey(a.ID), authz.EConflict},
		{"negative grace", active.ID, -time.Second, NewKey(a.ID), authz.EInvalid},
		{"replacement without hash", active.ID, 0, authz.NewKey{Hint: "sk-kg-...abcd"}, authz.EInvalid},
		{"replacement with a taken hash", active.ID, 0, authz.NewKey{Hash: revoked.Hash, Hint: "sk-kg-...abcd"}, authz.EConflict},
		{"replacement expiring now", active.ID, 0, authz.NewKey{Hash: NewKey("").Hash, Hint: "x", ExpireTime: e.clock.Now()}, authz.EInvalid},
	} {
		_, _, err := e.RotateKey(e.ctx, c.id, c.grace, c.repl)
		wantCode(t, c.what, err, c.code)
		if _, found, _ := e.LookupKey(e.ctx, c.repl.Hash); found && c.repl.Hash != revoked.Hash {
			t.Errorf("%s: the refused replacement was stored", c.what)
		}
	}
	for id, want := range before {
		equal(t, "unchanged "+id, e.getKey(t, id), want, normKey)
	}
	if c := e.lookup(t, active.Hash); c.Revoked || !c.ExpireTime.IsZero() {
		t.Errorf("credential of the key after refused rotations = %+v", c)
	}
}

func testKeyExpiry(t *testing.T, e *env) {
	a := e.account(t, 1)
	nk := NewKey(a.ID)
	nk.ExpireTime = e.clock.Now().Add(time.Hour)
	k, err := e.CreateKey(e.ctx, nk)
	if err != nil {
		t.Fatal(err)
	}
	if s := k.State(e.clock.Now()); s != authz.KeyActive {
		t.Errorf("state = %s, want active", s)
	}
	e.clock.Advance(time.Hour)
	if k := e.getKey(t, k.ID); k.State(e.clock.Now()) != authz.KeyExpired {
		t.Errorf("state an hour later = %s, want expired", k.State(e.clock.Now()))
	}
	// The index still finds an expired key: the decision is the Authorizer's.
	if c := e.lookup(t, k.Hash); !normTime(c.ExpireTime).Equal(nk.ExpireTime) || c.Revoked {
		t.Errorf("credential = %+v", c)
	}
}

func testMarkUsed(t *testing.T, e *env) {
	a := e.account(t, 1)
	k := e.key(t, a.ID)
	used := e.clock.Now().Add(time.Minute)
	e.MarkUsed(k.Hash, used)
	e.MarkUsed(k.Hash, used.Add(-time.Hour)) // an older use changes nothing
	e.MarkUsed(authz.HashSecret(authz.NewSecret()), used)
	if got := e.getKey(t, k.ID).LastUsedTime; !normTime(got).Equal(used) {
		t.Errorf("LastUsedTime = %s, want %s", got, used)
	}
	later := used.Add(time.Hour)
	e.MarkUsed(k.Hash, later)
	ks, _, err := e.Keys(e.ctx, a.ID, authz.Page{})
	if err != nil || len(ks) != 1 || !normTime(ks[0].LastUsedTime).Equal(later) {
		t.Errorf("Keys = %+v, %v; want LastUsedTime %s", ks, err, later)
	}
	r, err := e.RevokeKey(e.ctx, k.ID)
	if err != nil || !normTime(r.LastUsedTime).Equal(later) {
		t.Errorf("RevokeKey = %+v, %v; want LastUsedTime kept", r, err)
	}
	if got := e.getKey(t, k.ID).LastUsedTime; !normTime(got).Equal(later) {
		t.Errorf("LastUsedTime after revoking = %s, want %s", got, later)
	}
}

func testConcurrency(t *testing.T, e *env) {
	const workers, perWorker = 8, 25
	a := e.account(t, 1000)
	k := e.key(t, a.ID)

	var readers, writers sync.WaitGroup
	stop := make(chan struct{})
	readers.Go(func() { // a reader racing the writers
		for {
			select {
			case <-stop:
				return
			default:
				if _, _, err := e.LookupKey(e.ctx, k.Hash); err != nil {
					t.Error(err)
					return
				}
				e.MarkUsed(k.Hash, e.clock.Now())
			}
		}
	})
	for w := range workers {
		writers.Go(func() {
			for i := range perWorker {
				_, err := e.ChangeBalance(e.ctx, authz.BalanceChange{AccountID: a.ID, Kind: authz.LedgerDebit, Amount: 3, KeyID: k.ID,
					IdempotencyKey: fmt.Sprintf("w%d-%d", w, i)})
				if err != nil {
					t.Error(err)
				}
			}
			// Every worker sends the same credit: it is applied once.
			_, err := e.ChangeBalance(e.ctx, authz.BalanceChange{AccountID: a.ID, Kind: authz.LedgerCredit, Amount: 50, IdempotencyKey: "once"})
			if err != nil {
				t.Error(err)
			}
		})
	}
	writers.Wait()
	close(stop)
	readers.Wait()

	want := int64(1000 - workers*perWorker*3 + 50)
	if got := e.getAccount(t, a.ID).Balance; got != want {
		t.Errorf("balance = %d, want %d", got, want)
	}
	if c := e.lookup(t, k.Hash); c.Balance != want {
		t.Errorf("LookupKey balance = %d, want %d", c.Balance, want)
	}
	if l := e.ledger(t, a.ID); len(l) != 1+workers*perWorker+1 {
		t.Errorf("ledger has %d entries, want %d", len(l), 2+workers*perWorker)
	}
}
