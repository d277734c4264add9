package main

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// adminTokenPrefix marks admin tokens so that secret scanners and people can
// tell them from API keys.
const adminTokenPrefix = "kgadmin-"

// loadOrCreateToken reads the admin token from path, or creates the file
// with a new token (mode 0600) when it does not exist.
func loadOrCreateToken(path string) (token string, created bool, err error) {
	token, err = readToken(path)
	if err == nil {
		return token, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", false, err
	}
	var b [32]byte
	rand.Read(b[:])
	token = adminTokenPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", false, fmt.Errorf("create admin token file: %w", err)
	}
	_, err = f.WriteString(token + "\n")
	if err = errors.Join(err, f.Sync(), f.Close()); err != nil {
		os.Remove(path)
		return "", false, fmt.Errorf("write admin token file: %w", err)
	}
	return token, true, nil
}

// readToken reads the first token of a token file: the one the CLI
// presents.
func readToken(path string) (string, error) {
	tokens, err := readTokens(path)
	if err != nil {
		return "", err
	}
	return tokens[0], nil
}

// readTokens reads a token file: one token a line, blank lines and lines
// starting with # left out. It refuses a file without tokens.
func readTokens(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("admin token: %w", err)
	}
	var tokens []string
	for line := range strings.Lines(string(b)) {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			tokens = append(tokens, line)
		}
	}
	if len(tokens) == 0 {
		return nil, fmt.Errorf("admin token file %s holds no token", path)
	}
	return tokens, nil
}
