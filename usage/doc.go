// Package usage reads what an LLM API call costs: the model, output limit
// and streaming options of its request, and the token usage its response
// reports. It also prices that usage exactly, in integers.
//
// It imports only the standard library and understands OpenAI's Chat
// Completions, Completions, Embeddings and Responses APIs and Anthropic's
// Messages API, as JSON and as Server-Sent Events streams.
//
// # Tokens and prices
//
// Tokens counts a request's tokens by price category, each token in one
// category: Input (not read from a cache), CachedInput (read from one),
// CacheWrite (written to one) and Output. OpenAI reports cached tokens as a
// part of prompt_tokens or input_tokens, Anthropic reports its cache reads
// and writes in addition to input_tokens; Tokens already has them apart.
//
// Price gives the balance units that 1,000,000 tokens of each category cost.
// Cost is ceil(Σ tokens × price / 1,000,000), rounded up once per request
// and computed in 128-bit integers: a cost above math.MaxInt64 is
// ErrOverflow, never a wrapped value.
//
// # Requests
//
// ParseRequest reads model, stream, stream_options.include_usage and the
// output limit (max_tokens, max_completion_tokens or max_output_tokens) of
// a request body. IncludeUsage adds "stream_options": {"include_usage": true}
// to an OpenAI chat or completions stream that lacks it, since a stream
// without it reports no usage; it edits those bytes only.
//
// # Responses
//
// A Parser is fed a response body in chunks split anywhere and keeps a fixed
// amount of memory. Its Result holds the response's model, its Tokens, and
// Found, which says the response's final usage was seen: a 2xx response
// that ends without it was interrupted or did not report usage.
package usage
