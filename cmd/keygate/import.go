package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/store/bolt"
	"github.com/keygate/keygate/store/etcd"
	"github.com/keygate/keygate/store/record"
)

const importSynopsis = `keygate import [--store bolt|etcd] [flags] FILE

Loads accounts and their keys from FILE (JSON Lines; "-" reads standard
input) straight into the store: the bbolt database --db, which no keygate
serve may hold open, or with --store etcd the etcd prefix, empty or in use
by running replicas. Each line is one account:

  {"name": "Acme Corp", "balance": 1000, "disabled": false, "keys": [
    {"name": "backend", "secret": "sk-kg-..."},
    {"name": "legacy", "sha256": "<64 hex digits>", "hint": "sk-...wxyz", "expireTime": "2027-01-01T00:00:00Z"}]}

A key is given either as its secret (keygate's own format, checksum
included, or another gateway's key of 20 to 256 token characters, which
keeps working as it is) or as the SHA-256 of its secret, in hex. Only the
hash and a hint are stored. Every line is checked first, and bad ones are
reported with their line numbers; then everything is imported in one
transaction, or nothing is.

With --store etcd the records are written into an empty prefix all at
once (as keygate migrate does: no replica starts on part of it); into a
prefix in use one account at a time, each with its keys, and a key whose
hash another key holds fails the import and removes the accounts already
written. An import killed midway leaves the accounts written so far.`

// maxReported bounds the bad lines an import lists.
const maxReported = 20

func runImport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("import", importSynopsis, stdout)
	db := fs.String("db", "keygate.db", "bbolt database `file`, created if missing")
	store := fs.String("store", storeBolt, "`kind` of store to import into: bolt (--db) or etcd (--etcd-endpoints)")
	var e EtcdConfig
	ef := addEtcdFlags(fs, &e)
	fs.bindEnvAll()
	pos, err := fs.parse(args)
	if err != nil {
		return err
	}
	if err := wantArgs("import", pos, "FILE"); err != nil {
		return err
	}
	switch *store {
	case storeBolt:
	case storeEtcd:
		if err := ef.apply(); err != nil {
			return err
		}
	default:
		return usagef("--store is %s or %s, not %q", storeBolt, storeEtcd, *store)
	}
	in := io.Reader(os.Stdin)
	if pos[0] != "-" {
		f, err := os.Open(pos[0])
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	}
	// An import is one large transaction built in memory: collect its
	// garbage less often than a server would.
	debug.SetGCPercent(400)
	start := time.Now()
	accounts, lines, err := parseImport(in)
	if err != nil {
		return err
	}
	d, err := record.NewImport(accounts, time.Now())
	if err == nil && *store == storeEtcd {
		err = importEtcd(ctx, e, d)
	} else if err == nil {
		err = importBolt(ctx, *db, d)
	}
	if ie := (*record.ImportError)(nil); errors.As(err, &ie) {
		bad := make([]string, len(ie.Accounts))
		for i, a := range ie.Accounts {
			bad[i] = fmt.Sprintf("line %d: %v", lines[a.Index], a.Err)
		}
		return badLines(bad)
	}
	if err != nil {
		return err
	}
	keys := 0
	for _, a := range accounts {
		keys += len(a.Keys)
	}
	took := time.Since(start)
	fmt.Fprintf(stdout, "imported %s and %s in %s (%.0f keys/s)\n",
		plural(len(accounts), "account", "accounts"), plural(keys, "key", "keys"), took.Round(time.Millisecond), float64(keys)/took.Seconds())
	return nil
}

// importBolt imports d into the bbolt database at path.
func importBolt(ctx context.Context, path string, d record.Dump) error {
	s, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		return fmt.Errorf("open database: %w", err)
	}
	return errors.Join(s.Import(ctx, d), s.Close())
}

// importEtcd imports d into the etcd prefix of e: all at once into an
// empty prefix (etcd.Restore), else through a store open on it.
func importEtcd(ctx context.Context, e EtcdConfig, d record.Dump) error {
	cli, err := etcdClient(e)
	if err != nil {
		return err
	}
	if err = etcd.Restore(ctx, cli, e.Prefix, d); !errors.Is(err, etcd.ErrNotEmpty) {
		cli.Close()
		if err != nil {
			return fmt.Errorf("import into etcd prefix %s: %w", e.Prefix, err)
		}
		return nil
	}
	s, err := etcd.Open(ctx, cli, e.Prefix, etcd.Options{RequestTimeout: e.RequestTimeout})
	if err != nil {
		cli.Close()
		return fmt.Errorf("import into etcd prefix %s: %w", e.Prefix, err)
	}
	err = s.Import(ctx, d)
	if ie := (*record.ImportError)(nil); errors.As(err, &ie) {
		return errors.Join(err, s.Close())
	}
	if err = errors.Join(err, s.Close()); err != nil {
		return fmt.Errorf("import into etcd prefix %s: %w", e.Prefix, err)
	}
	return nil
}

// importLine is one line of an import file.
type importLine struct {
	Name     string      `json:"name"`
	Balance  int64       `json:"balance"`
	Disabled bool        `json:"disabled"`
	Keys     []importKey `json:"keys"`
}

type importKey struct {
	Name       string    `json:"name"`
	Secret     string    `json:"secret"`
	SHA256     string    `json:"sha256"`
	Hint       string    `json:"hint"`
	ExpireTime time.Time `json:"expireTime"`
}

// parseImport reads every line of r and returns the accounts with the line
// number of each, or an error listing the lines that are not valid JSON or
// give a key badly. record.NewImport and the store check the rest (names,
// balances, expiry, duplicate keys); runImport maps their errors to lines.
func parseImport(r io.Reader) ([]record.ImportAccount, []int, error) {
	var (
		accounts []record.ImportAccount
		lines    []int
		bad      []string
	)
	br := bufio.NewReaderSize(r, 1<<20)
	for n := 1; ; n++ {
		line, err := br.ReadBytes('\n')
		if err != nil && err != io.EOF {
			return nil, nil, err
		}
		if trimmed := bytes.TrimSpace(line); len(trimmed) > 0 {
			a, lineErr := parseImportLine(trimmed)
			if lineErr != nil {
				bad = append(bad, fmt.Sprintf("line %d: %v", n, lineErr))
			} else {
				accounts = append(accounts, a)
				lines = append(lines, n)
			}
		}
		if err == io.EOF {
			break
		}
	}
	if bad != nil {
		return nil, nil, badLines(bad)
	}
	if len(accounts) == 0 {
		return nil, nil, errors.New("import: the file holds no accounts")
	}
	return accounts, lines, nil
}

func parseImportLine(line []byte) (record.ImportAccount, error) {
	var l importLine
	d := json.NewDecoder(bytes.NewReader(line))
	d.DisallowUnknownFields()
	if err := d.Decode(&l); err != nil {
		return record.ImportAccount{}, err
	}
	if d.More() {
		return record.ImportAccount{}, errors.New("more than one JSON value on the line")
	}
	a := record.ImportAccount{Name: l.Name, Balance: l.Balance, Disabled: l.Disabled, Keys: make([]record.ImportKey, len(l.Keys))}
	for i, k := range l.Keys {
		ik := &a.Keys[i]
		ik.Name, ik.ExpireTime, ik.Hint = k.Name, k.ExpireTime, k.Hint
		switch {
		case (k.Secret == "") == (k.SHA256 == ""):
			return a, fmt.Errorf("key %d: give either secret or sha256", i+1)
		case k.Secret != "":
			if !authz.WellFormedToken(k.Secret) {
				return a, fmt.Errorf("key %d: the secret is neither a keygate key with a correct checksum nor %d to %d token characters", i+1, authz.MinImportedSecretLen, authz.MaxImportedSecretLen)
			}
			ik.Hash = authz.HashSecret(k.Secret)
			if ik.Hint == "" {
				ik.Hint = secretHint(k.Secret)
			}
		default:
			h, err := hex.DecodeString(k.SHA256)
			if err != nil || len(h) != len(ik.Hash) {
				return a, fmt.Errorf("key %d: sha256 must be 64 hex digits", i+1)
			}
			copy(ik.Hash[:], h)
			if ik.Hint == "" {
				ik.Hint = "sha256:" + strings.ToLower(k.SHA256[:8]) + "..."
			}
		}
	}
	return a, nil
}

// secretHint is authz.SecretHint for keygate's keys, and the first three and
// last four characters of another gateway's.
func secretHint(s string) string {
	if strings.HasPrefix(s, authz.SecretPrefix) {
		return authz.SecretHint(s)
	}
	return s[:3] + "..." + s[len(s)-4:]
}

// plural is n and the noun in the number n takes.
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// badLines is the error of an import with invalid lines.
func badLines(bad []string) error {
	msg := strings.Join(bad[:min(len(bad), maxReported)], "\n  ")
	if len(bad) > maxReported {
		msg += fmt.Sprintf("\n  ... and %d more", len(bad)-maxReported)
	}
	return fmt.Errorf("import: %d invalid line(s), nothing imported:\n  %s", len(bad), msg)
}
