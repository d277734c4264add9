package main

import (
	"log/slog"
	"net/http"
	"sync"

	"github.com/keygate/keygate/admin"
)

// tokenWatch keeps the admin tokens serve accepts in step with the token
// file: before each admin request it looks at the file, and reads it again
// when it has changed. An operator rotates the token by writing the new one
// above the old, moving clients over, then removing the old line; the CLI
// presents the first token.
type tokenWatch struct {
	set  *admin.Tokens
	path string // "" for a token from the environment, which never changes
	log  *slog.Logger

	mu    sync.Mutex
	stamp fileStamp // of the file as last read
}

// watchTokens returns the tokens serve starts with: token alone when it
// came from KEYGATE_ADMIN_TOKEN, else every token of the token file.
func watchTokens(c Config, token string, log *slog.Logger) *tokenWatch {
	w := &tokenWatch{set: admin.NewTokens(token), log: log}
	if c.AdminToken == "" {
		w.path = tokenFileOf(c)
		w.refresh()
	}
	return w
}

// tokenFileOf is the token file serve reads.
func tokenFileOf(c Config) string {
	if c.TokenFile != "" {
		return c.TokenFile
	}
	return c.DBPath + ".admin-token"
}

// refresh reads the token file again if it has changed. A file that cannot
// be read or holds no token leaves the accepted tokens as they were.
func (w *tokenWatch) refresh() {
	if w.path == "" {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	stamp := stampOf(w.path)
	if stamp == w.stamp {
		return
	}
	first := w.stamp == fileStamp{}
	w.stamp = stamp
	tokens, err := readTokens(w.path)
	if err != nil {
		w.log.Warn("admin token file unusable; the tokens read before stay accepted", "err", err)
		return
	}
	w.set.Set(tokens...)
	if !first {
		w.log.Info("admin token file changed; its tokens are accepted now", "file", w.path, "tokens", len(tokens))
	}
}

// handler refreshes the tokens before each request to next.
func (w *tokenWatch) handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		w.refresh()
		next.ServeHTTP(rw, r)
	})
}
