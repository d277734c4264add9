package authz_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/store/bolt"
	"github.com/keygate/keygate/store/storetest"
)

// TestAuthorize runs the decision table against a real bbolt store.
func TestAuthorize(t *testing.T) {
	ctx := context.Background()
	clock := storetest.NewClock(testTime)
	store, err := bolt.Open(filepath.Join(t.TempDir(), "keygate.db"), bolt.Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	a := authz.NewAuthorizer(store, clock.Now)

	account := func(balance int64) authz.Account {
		acct, err := store.CreateAccount(ctx, "acme", balance)
		if err != nil {
			t.Fatal(err)
		}
		return acct
	}
	key := func(acct authz.Account, expire time.Time) (string, authz.Key) {
		secret := authz.NewSecret()
		k, err := store.CreateKey(ctx, authz.NewKey{AccountID: acct.ID, Name: "k", ExpireTime: expire,
			Hash: authz.HashSecret(secret), Hint: authz.SecretHint(secret)})
		if err != nil {
			t.Fatal(err)
		}
		return secret, k
	}

	rich := account(100)
	good, goodKey := key(rich, time.Time{})
	revoked, revokedKey := key(rich, time.Time{})
	if _, err := store.RevokeKey(ctx, revokedKey.ID); err != nil {
		t.Fatal(err)
	}
	expiring, expiringKey := key(rich, testTime.Add(time.Minute))
	broke, brokeKey := key(account(0), time.Time{})
	indebted := account(5)
	owing, owingKey := key(indebted, time.Time{})
	if _, err := store.ChangeBalance(ctx, authz.BalanceChange{AccountID: indebted.ID, Kind: authz.LedgerDebit, Amount: 7}); err != nil {
		t.Fatal(err)
	}
	blocked := account(100)
	disabled, disabledKey := key(blocked, time.Time{})
	if _, err := store.SetAccountStatus(ctx, blocked.ID, authz.AccountDisabled); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Minute) // expiring is now expired

	typo := []byte(good)
	typo[len(typo)-1] ^= 1
	for _, tc := range []struct {
		name   string
		header string
		want   authz.Reason
		key    authz.Key
	}{
		{"allowed", "Bearer " + good, authz.ReasonAllowed, goodKey},
		{"scheme in any case", "bEARER " + good, authz.ReasonAllowed, goodKey},
		{"missing", "", authz.ReasonNoKey, authz.Key{}},
		{"no scheme", good, authz.ReasonNotBearer, authz.Key{}},
		{"basic", "Basic Zm9vOmJhcg==", authz.ReasonNotBearer, authz.Key{}},
		{"empty token", "Bearer ", authz.ReasonNoKey, authz.Key{}},
		{"typo", "Bearer " + string(typo), authz.ReasonMalformedKey, authz.Key{}},
		{"garbage", "Bearer hunter2", authz.ReasonMalformedKey, authz.Key{}},
		{"two values joined", "Bearer " + good + ",Bearer " + good, authz.ReasonMalformedKey, authz.Key{}},
		{"unknown", "Bearer " + authz.NewSecret(), authz.ReasonUnknownKey, authz.Key{}},
		{"revoked", "Bearer " + revoked, authz.ReasonRevokedKey, revokedKey},
		{"expired", "Bearer " + expiring, authz.ReasonExpiredKey, expiringKey},
		{"disabled account", "Bearer " + disabled, authz.ReasonAccountDisabled, disabledKey},
		{"zero balance", "Bearer " + broke, authz.ReasonInsufficientBalance, brokeKey},
		{"negative balance", "Bearer " + owing, authz.ReasonInsufficientBalance, owingKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := a.Authorize(ctx, authz.Request{Authorization: tc.header})
			if err != nil {
				t.Fatal(err)
			}
			want := authz.Decision{Reason: tc.want, KeyID: tc.key.ID, AccountID: tc.key.AccountID, Route: openAIRoute}
			if d != want {
				t.Fatalf("Authorize(%q) = %+v, want %+v", tc.header, d, want)
			}
			if d.Allowed() != (tc.want == authz.ReasonAllowed) {
				t.Fatalf("Allowed() = %v for %v", d.Allowed(), d.Reason)
			}
		})
	}

	// Only allowed checks count as use.
	if err := store.FlushLastUsed(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, k := range []authz.Key{goodKey, revokedKey, brokeKey} {
		got, err := store.Key(ctx, k.ID)
		if err != nil {
			t.Fatal(err)
		}
		if used := !got.LastUsedTime.IsZero(); used != (k.ID == goodKey.ID) {
			t.Errorf("key %s: last used %v", k.ID, got.LastUsedTime)
		}
	}

	// A store that cannot answer is an error, never a decision.
	store.Close()
	if d, err := a.Authorize(ctx, authz.Request{Authorization: "Bearer " + good}); err == nil {
		t.Fatalf("closed store: got decision %+v, want an error", d)
	}
}

// openAIRoute is what a route that sets nothing reads as.
var openAIRoute = authz.Route{Sources: authz.SourcesOf(authz.SourceAuthorization), Style: authz.StyleOpenAI}
