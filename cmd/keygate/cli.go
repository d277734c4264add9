package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/keygate/keygate/admin"
	adminv1 "github.com/keygate/keygate/proto/keygate/admin/v1"
)

// command is one admin subcommand: its synopsis, its own flags, and what it
// does with the positional arguments.
type command struct {
	synopsis string
	args     []string
	flags    func(fs *flagSet)
	required []string // flags that must be given
	run      func(ctx context.Context, c *admin.Client, args []string) (proto.Message, error)
	// print shows the result as text; nil prints it as JSON.
	print func(w io.Writer, m proto.Message)
}

// runGroup dispatches "keygate <group> <name> ...".
func runGroup(ctx context.Context, group string, cmds map[string]*command, order []string, args []string, stdout, stderr io.Writer) error {
	groupUsage := func(w io.Writer) {
		fmt.Fprintf(w, "Usage: keygate %s <command> [flags]\n\nCommands:\n", group)
		for _, name := range order {
			fmt.Fprintf(w, "  %-8s %s\n", name, cmds[name].synopsis)
		}
		fmt.Fprintf(w, "\nRun \"keygate %s <command> --help\" for its flags.\n", group)
	}
	if len(args) == 0 {
		groupUsage(stderr)
		return usagef("%s: missing command", group)
	}
	if isHelp(args[0]) {
		groupUsage(stdout)
		return nil
	}
	cmd, ok := cmds[args[0]]
	if !ok {
		groupUsage(stderr)
		return usagef("%s: unknown command %q", group, args[0])
	}
	name := group + " " + args[0]
	synopsis := "keygate " + name
	for _, a := range cmd.args {
		synopsis += " <" + a + ">"
	}
	fs := newFlagSet(name, synopsis+" [flags]\n\n"+cmd.synopsis+".", stdout)
	var cf cliFlags
	cf.register(fs)
	if cmd.flags != nil {
		cmd.flags(fs)
	}
	pos, err := fs.parse(args[1:])
	if err != nil {
		return err
	}
	if err := wantArgs(name, pos, cmd.args...); err != nil {
		return err
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	for _, r := range cmd.required {
		if !given[r] {
			return usagef("%s: --%s is required", name, r)
		}
	}
	client, err := cf.client()
	if err != nil {
		return err
	}
	// net/http logs through the standard logger when a server that is not
	// the admin API speaks out of turn; explainClientError says it better.
	log.SetOutput(io.Discard)
	ctx, cancel := context.WithTimeout(ctx, cf.timeout)
	defer cancel()
	res, err := cmd.run(ctx, client, pos)
	if err != nil {
		return explainClientError(err, cf.adminURL)
	}
	if cf.output == "json" || cmd.print == nil {
		return printJSON(stdout, res)
	}
	cmd.print(stdout, res)
	return nil
}

// byID adapts a call on one id to a command's run function.
func byID(call func(context.Context, *admin.Client, string) (proto.Message, error)) func(context.Context, *admin.Client, []string) (proto.Message, error) {
	return func(ctx context.Context, c *admin.Client, args []string) (proto.Message, error) {
		return call(ctx, c, args[0])
	}
}

// pagingFlags registers the flags of a listing.
func pagingFlags(size *int, token *string) func(fs *flagSet) {
	return func(fs *flagSet) {
		fs.IntVar(size, "page-size", 0, "how many to list (default 50, at most 1000)")
		fs.StringVar(token, "page-token", "", "continue a listing from the `token` a previous page printed")
	}
}

func runAccount(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var (
		name                  string
		balance, amount       int64
		idempotencyKey, keyID string
		pageSize              int
		pageToken             string
	)
	paging := pagingFlags(&pageSize, &pageToken)
	change := func(debit bool) func(fs *flagSet) {
		return func(fs *flagSet) {
			fs.Int64Var(&amount, "amount", 0, "the amount, a positive integer (required)")
			fs.StringVar(&idempotencyKey, "idempotency-key", "", "a `key` that makes a retried request apply once")
			if debit {
				fs.StringVar(&keyID, "key", "", "the key `id` the usage is attributed to")
			}
		}
	}
	cmds := map[string]*command{
		"create": {
			synopsis: "Create an account", required: []string{"name"},
			flags: func(fs *flagSet) {
				fs.StringVar(&name, "name", "", "the account's display name (required)")
				fs.Int64Var(&balance, "balance", 0, "the opening balance")
			},
			run: func(ctx context.Context, c *admin.Client, _ []string) (proto.Message, error) {
				return c.CreateAccount(ctx, &adminv1.CreateAccountRequest{Name: name, Balance: balance})
			},
			print: printAccount,
		},
		"get": {
			synopsis: "Show an account", args: []string{"account"},
			run: byID(func(ctx context.Context, c *admin.Client, id string) (proto.Message, error) {
				return c.GetAccount(ctx, &adminv1.GetAccountRequest{Account: id})
			}),
			print: printAccount,
		},
		"list": {
			synopsis: "List accounts, oldest first", flags: paging,
			run: func(ctx context.Context, c *admin.Client, _ []string) (proto.Message, error) {
				return c.ListAccounts(ctx, &adminv1.ListAccountsRequest{PageSize: int32(pageSize), PageToken: pageToken})
			},
			print: printAccounts,
		},
		"credit": {
			synopsis: "Top up an account's balance", args: []string{"account"}, flags: change(false), required: []string{"amount"},
			run: byID(func(ctx context.Context, c *admin.Client, id string) (proto.Message, error) {
				return c.CreditAccount(ctx, &adminv1.CreditAccountRequest{Account: id, Amount: amount, IdempotencyKey: idempotencyKey})
			}),
			print: printLedgerEntry,
		},
		"debit": {
			synopsis: "Record usage against an account's balance", args: []string{"account"}, flags: change(true), required: []string{"amount"},
			run: byID(func(ctx context.Context, c *admin.Client, id string) (proto.Message, error) {
				return c.DebitAccount(ctx, &adminv1.DebitAccountRequest{Account: id, Amount: amount, IdempotencyKey: idempotencyKey, Key: keyID})
			}),
			print: printLedgerEntry,
		},
		"disable": {
			synopsis: "Block every key of an account", args: []string{"account"},
			run: byID(func(ctx context.Context, c *admin.Client, id string) (proto.Message, error) {
				return c.DisableAccount(ctx, &adminv1.DisableAccountRequest{Account: id})
			}),
			print: printAccount,
		},
		"enable": {
			synopsis: "Unblock a disabled account", args: []string{"account"},
			run: byID(func(ctx context.Context, c *admin.Client, id string) (proto.Message, error) {
				return c.EnableAccount(ctx, &adminv1.EnableAccountRequest{Account: id})
			}),
			print: printAccount,
		},
		"ledger": {
			synopsis: "List an account's balance changes, oldest first", args: []string{"account"}, flags: paging,
			run: byID(func(ctx context.Context, c *admin.Client, id string) (proto.Message, error) {
				return c.ListLedger(ctx, &adminv1.ListLedgerRequest{Account: id, PageSize: int32(pageSize), PageToken: pageToken})
			}),
			print: printLedger,
		},
	}
	order := []string{"create", "get", "list", "credit", "debit", "disable", "enable", "ledger"}
	return runGroup(ctx, "account", cmds, order, args, stdout, stderr)
}

func runKey(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var (
		name      string
		expires   string
		ttl       time.Duration
		grace     time.Duration
		pageSize  int
		pageToken string
	)
	cmds := map[string]*command{
		"create": {
			synopsis: "Create a key for an account and print its secret once", args: []string{"account"}, required: []string{"name"},
			flags: func(fs *flagSet) {
				fs.StringVar(&name, "name", "", "the key's name, e.g. the application using it (required)")
				fs.StringVar(&expires, "expires", "", "when the key expires: a `time` in RFC 3339 (2027-01-31T00:00:00Z) or a duration from now (30d, 12h, 90m)")
				fs.DurationVar(&ttl, "ttl", 0, "expire after this `duration`, e.g. 720h (--expires 30d says the same)")
			},
			run: byID(func(ctx context.Context, c *admin.Client, account string) (proto.Message, error) {
				req := &adminv1.CreateKeyRequest{Account: account, Name: name}
				switch {
				case expires != "" && ttl != 0:
					return nil, usagef("give --expires or --ttl, not both")
				case expires != "":
					t, err := parseExpiry(expires, time.Now())
					if err != nil {
						return nil, usagef("--expires: %v", err)
					}
					req.ExpireTime = timestamppb.New(t)
				case ttl < 0:
					return nil, usagef("--ttl must be positive")
				case ttl > 0:
					req.ExpireTime = timestamppb.New(time.Now().Add(ttl))
				}
				return c.CreateKey(ctx, req)
			}),
			print: func(w io.Writer, m proto.Message) {
				r := m.(*adminv1.CreateKeyResponse)
				printSecret(w, r.GetKey(), r.GetSecret())
			},
		},
		"get": {
			synopsis: "Show a key (never its secret)", args: []string{"key"},
			run: byID(func(ctx context.Context, c *admin.Client, id string) (proto.Message, error) {
				return c.GetKey(ctx, &adminv1.GetKeyRequest{Key: id})
			}),
			print: func(w io.Writer, m proto.Message) { printKey(w, m.(*adminv1.Key)) },
		},
		"list": {
			synopsis: "List an account's keys, oldest first", args: []string{"account"},
			flags: pagingFlags(&pageSize, &pageToken),
			run: byID(func(ctx context.Context, c *admin.Client, id string) (proto.Message, error) {
				return c.ListKeys(ctx, &adminv1.ListKeysRequest{Account: id, PageSize: int32(pageSize), PageToken: pageToken})
			}),
			print: printKeys,
		},
		"revoke": {
			synopsis: "Revoke a key at once; the account's other keys keep working", args: []string{"key"},
			run: byID(func(ctx context.Context, c *admin.Client, id string) (proto.Message, error) {
				return c.RevokeKey(ctx, &adminv1.RevokeKeyRequest{Key: id})
			}),
			print: func(w io.Writer, m proto.Message) { printKey(w, m.(*adminv1.Key)) },
		},
		"rotate": {
			synopsis: "Issue a new key in place of an active one and print its secret once", args: []string{"key"},
			flags: func(fs *flagSet) {
				fs.DurationVar(&grace, "grace", 0, "how long the old key keeps working, e.g. 24h (default: it stops at once)")
			},
			run: byID(func(ctx context.Context, c *admin.Client, id string) (proto.Message, error) {
				if grace < 0 {
					return nil, usagef("--grace must not be negative")
				}
				return c.RotateKey(ctx, &adminv1.RotateKeyRequest{Key: id, GracePeriod: durationpb.New(grace)})
			}),
			print: func(w io.Writer, m proto.Message) {
				r := m.(*adminv1.RotateKeyResponse)
				printSecret(w, r.GetKey(), r.GetSecret())
				if p := r.GetPrevious(); p != nil {
					until := "now"
					if p.GetExpireTime() != nil {
						until = formatTime(p.GetExpireTime())
					}
					fmt.Fprintf(w, "The old key %s stops working: %s\n", p.GetId(), until)
				}
			},
		},
	}
	order := []string{"create", "get", "list", "revoke", "rotate"}
	return runGroup(ctx, "key", cmds, order, args, stdout, stderr)
}

// parseExpiry reads --expires: a time in RFC 3339, or a positive duration
// from now in Go's syntax or in days ("30d").
func parseExpiry(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(s)
	if days, ok := strings.CutSuffix(s, "d"); ok && err != nil {
		var n int
		n, err = strconv.Atoi(days)
		d = time.Duration(n) * 24 * time.Hour
	}
	if err != nil || d <= 0 {
		return time.Time{}, fmt.Errorf("%q is neither a time in RFC 3339 (2027-01-31T00:00:00Z) nor a positive duration (30d, 12h)", s)
	}
	return now.Add(d), nil
}
