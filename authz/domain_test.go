package authz_test

import (
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/authz"
)

// TestValidationMessages pins the one policy on echoing bad input: numbers
// as they came, strings quoted and cut, secrets never.
func TestValidationMessages(t *testing.T) {
	secret := authz.NewSecret()
	imported := strings.Repeat("Ab3", 10) // an imported secret is any 20 to 256 token characters
	for _, tc := range []struct {
		name      string
		err       error
		want      []string
		forbidden string
	}{
		{"keygate secret as an account id", authz.ValidateAccountID(secret), []string{"not shown", "is not an account id", `"acct_"`}, secret[len(authz.SecretPrefix):]},
		{"imported secret as a key id", authz.ValidateKeyID(imported), []string{"not shown", "is not a key id"}, imported},
		{"short bad id", authz.ValidateAccountID("acct_1"), []string{`"acct_1" is not an account id`}, ""},
		{"long bad id", authz.ValidateKeyID("key_" + strings.Repeat("\x00", 100)), []string{`"... is not a key id`}, strings.Repeat(`\x00`, 41)},
		{"negative page size", authz.Page{Size: -3}.Validate(), []string{"page size must not be negative, got -3"}, ""},
		{"negative opening balance", authz.NewAccount{Name: "a", Balance: -1}.Validate(), []string{"opening balance must not be negative, got -1"}, ""},
		{"negative grace", authz.ValidateGrace(-time.Second), []string{"grace period must not be negative, got -1s"}, ""},
		{"unknown status", authz.AccountStatus(9).Validate(), []string{"active or disabled"}, ""},
		{"debit of a secret's key", (&authz.BalanceChange{AccountID: authz.NewAccountID(time.Now()), Kind: authz.LedgerDebit, Amount: 1, KeyID: secret}).Validate(), []string{"is not a key id"}, secret[len(authz.SecretPrefix):]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if authz.Code(tc.err) != authz.EInvalid {
				t.Fatalf("error %v, want EInvalid", tc.err)
			}
			msg := authz.Message(tc.err)
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("message %q lacks %q", msg, w)
				}
			}
			if tc.forbidden != "" && strings.Contains(msg, tc.forbidden) {
				t.Errorf("message %q shows %q", msg, tc.forbidden)
			}
		})
	}
	if err := (authz.Page{Size: authz.MaxPageSize + 1}).Validate(); err != nil {
		t.Errorf("a page larger than the largest: %v, want it lowered", err)
	}
	if got := (authz.Page{Size: authz.MaxPageSize + 1}).Limit(); got != authz.MaxPageSize {
		t.Errorf("Limit = %d, want %d", got, authz.MaxPageSize)
	}
	if got := (authz.Page{}).Limit(); got != authz.DefaultPageSize {
		t.Errorf("Limit of a zero page = %d, want %d", got, authz.DefaultPageSize)
	}
}
