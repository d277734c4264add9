package usage

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
)

// ErrOverflow is returned by Cost when the cost of one request does not fit
// in an int64.
var ErrOverflow = errors.New("usage: cost overflows int64")

// perMillion is the number of tokens a Price is quoted for.
const perMillion = 1_000_000

// Tokens counts the tokens of one request by price category. Each token is
// in exactly one category, so Total is their sum. The zero value is no usage.
type Tokens struct {
	// Input are the input tokens not read from a cache (OpenAI:
	// prompt_tokens − cached_tokens; Anthropic: input_tokens).
	Input int64
	// CachedInput are the input tokens read from a cache (OpenAI:
	// cached_tokens; Anthropic: cache_read_input_tokens).
	CachedInput int64
	// CacheWrite are the input tokens written to a cache (Anthropic:
	// cache_creation_input_tokens).
	CacheWrite int64
	// Output are the generated tokens (completion_tokens, output_tokens).
	Output int64
}

// Total is the number of tokens in all categories, saturating at
// math.MaxInt64.
func (t Tokens) Total() int64 {
	return addSat(addSat(t.Input, t.CachedInput), addSat(t.CacheWrite, t.Output))
}

// addSat adds two non-negative counts, saturating at math.MaxInt64.
func addSat(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// Price is what a model's tokens cost, in balance units per 1,000,000
// tokens of each category. The zero value makes every token free.
type Price struct {
	Input       int64
	CachedInput int64
	CacheWrite  int64
	Output      int64
}

// Validate reports an error when a field is negative.
func (p Price) Validate() error {
	return nonNegative("price", p.Input, p.CachedInput, p.CacheWrite, p.Output)
}

// nonNegative reports the first negative value among the four categories.
func nonNegative(what string, input, cachedInput, cacheWrite, output int64) error {
	for _, f := range [...]struct {
		name string
		v    int64
	}{{"input", input}, {"cachedInput", cachedInput}, {"cacheWrite", cacheWrite}, {"output", output}} {
		if f.v < 0 {
			return fmt.Errorf("usage: %s %s is negative: %d", what, f.name, f.v)
		}
	}
	return nil
}

// Cost is the charge for t at price p: the sum over the categories of tokens
// × price, divided by 1,000,000 and rounded up once, computed exactly in
// 128-bit integers. Negative tokens or prices are an error, and so is a cost
// above math.MaxInt64 (ErrOverflow).
func Cost(t Tokens, p Price) (int64, error) {
	if err := nonNegative("tokens", t.Input, t.CachedInput, t.CacheWrite, t.Output); err != nil {
		return 0, err
	}
	if err := p.Validate(); err != nil {
		return 0, err
	}
	// Each product is below 2^126, so the sum of four fits in 128 bits.
	var hi, lo uint64
	for _, f := range [...][2]int64{{t.Input, p.Input}, {t.CachedInput, p.CachedInput}, {t.CacheWrite, p.CacheWrite}, {t.Output, p.Output}} {
		h, l := bits.Mul64(uint64(f[0]), uint64(f[1]))
		var carry uint64
		lo, carry = bits.Add64(lo, l, 0)
		hi += h + carry
	}
	if hi >= perMillion { // the quotient would not fit in 64 bits
		return 0, ErrOverflow
	}
	q, r := bits.Div64(hi, lo, perMillion)
	if r != 0 {
		q++
	}
	if q > math.MaxInt64 {
		return 0, ErrOverflow
	}
	return int64(q), nil
}
