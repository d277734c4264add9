package usage_test

import (
	"errors"
	"math"
	"math/big"
	"math/rand/v2"
	"testing"

	"github.com/keygate/keygate/usage"
)

func TestCost(t *testing.T) {
	const maxI = math.MaxInt64
	for _, tc := range []struct {
		name    string
		tokens  usage.Tokens
		price   usage.Price
		want    int64
		wantErr error
	}{
		{"nothing", usage.Tokens{}, usage.Price{Input: 5}, 0, nil},
		{"free", usage.Tokens{Input: 1000, Output: 1000}, usage.Price{}, 0, nil},
		{"one token rounds up to one unit", usage.Tokens{Input: 1}, usage.Price{Input: 1}, 1, nil},
		{"exact million", usage.Tokens{Input: 1_000_000}, usage.Price{Input: 3}, 3, nil},
		{"one past a million", usage.Tokens{Input: 1_000_001}, usage.Price{Input: 3}, 4, nil},
		{"exact multiple", usage.Tokens{Output: 2_000_000}, usage.Price{Output: 5}, 10, nil},
		// 86×150 + 1920×75 + 300×600 = 336,900 → 0.3369 → 1, not 1+1+1.
		{"rounded up once per request", usage.Tokens{Input: 86, CachedInput: 1920, Output: 300},
			usage.Price{Input: 150, CachedInput: 75, Output: 600}, 1, nil},
		// 21×3,000,000 + 2300×300,000 + 1100×3,750,000 + 13×15,000,000 = 5,073,000,000 → 5073.
		{"all four categories", usage.Tokens{Input: 21, CachedInput: 2300, CacheWrite: 1100, Output: 13},
			usage.Price{Input: 3_000_000, CachedInput: 300_000, CacheWrite: 3_750_000, Output: 15_000_000}, 5073, nil},
		{"largest cost", usage.Tokens{Input: maxI}, usage.Price{Input: 1_000_000}, maxI, nil},
		{"largest cost from four carries", usage.Tokens{Input: maxI, CachedInput: maxI, CacheWrite: maxI, Output: maxI},
			usage.Price{Input: 250_000, CachedInput: 250_000, CacheWrite: 250_000, Output: 250_000}, maxI, nil},
		{"one past the largest", usage.Tokens{Input: maxI}, usage.Price{Input: 1_000_001}, 0, usage.ErrOverflow},
		{"128-bit product", usage.Tokens{Input: maxI}, usage.Price{Input: maxI}, 0, usage.ErrOverflow},
		{"huge price, few tokens", usage.Tokens{Output: 3}, usage.Price{Output: maxI}, 27670116110565, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := usage.Cost(tc.tokens, tc.price)
			if !errors.Is(err, tc.wantErr) || got != tc.want {
				t.Fatalf("Cost = %d, %v; want %d, %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestCostRejectsNegatives(t *testing.T) {
	if _, err := usage.Cost(usage.Tokens{CacheWrite: -1}, usage.Price{}); err == nil {
		t.Fatal("Cost accepted negative tokens")
	}
	if _, err := usage.Cost(usage.Tokens{}, usage.Price{CachedInput: -1}); err == nil {
		t.Fatal("Cost accepted a negative price")
	}
	if err := (usage.Price{Output: -5}).Validate(); err == nil {
		t.Fatal("Validate accepted a negative output price")
	}
	if err := (usage.Price{Input: 1, CachedInput: 0, CacheWrite: 2, Output: 3}).Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
}

// TestCostMatchesBig checks Cost against math/big on random values of every
// magnitude.
func TestCostMatchesBig(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	n := func() int64 { return r.Int64() >> r.IntN(64) } // every magnitude
	for range 20000 {
		tk := usage.Tokens{Input: n(), CachedInput: n(), CacheWrite: n(), Output: n()}
		p := usage.Price{Input: n(), CachedInput: n(), CacheWrite: n(), Output: n()}
		sum := new(big.Int)
		for _, f := range [][2]int64{{tk.Input, p.Input}, {tk.CachedInput, p.CachedInput}, {tk.CacheWrite, p.CacheWrite}, {tk.Output, p.Output}} {
			sum.Add(sum, new(big.Int).Mul(big.NewInt(f[0]), big.NewInt(f[1])))
		}
		sum.Add(sum, big.NewInt(999_999))
		want := sum.Quo(sum, big.NewInt(1_000_000))
		got, err := usage.Cost(tk, p)
		switch {
		case !want.IsInt64():
			if !errors.Is(err, usage.ErrOverflow) {
				t.Fatalf("Cost(%+v, %+v) = %d, %v; want ErrOverflow", tk, p, got, err)
			}
		case err != nil || got != want.Int64():
			t.Fatalf("Cost(%+v, %+v) = %d, %v; want %s", tk, p, got, err, want)
		}
	}
}

func TestTotal(t *testing.T) {
	if got := (usage.Tokens{Input: 1, CachedInput: 2, CacheWrite: 3, Output: 4}).Total(); got != 10 {
		t.Fatalf("Total = %d, want 10", got)
	}
	if got := (usage.Tokens{Input: math.MaxInt64, Output: 1}).Total(); got != math.MaxInt64 {
		t.Fatalf("Total = %d, want saturation at MaxInt64", got)
	}
}
