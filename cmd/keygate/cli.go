package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/keygate/keygate/admin"
	adminv1 "github.com/keygate/keygate/proto/keygate/admin/v1"
)

// cliFlags are the flags every admin command takes.
type cliFlags struct {
	adminURL  string
	tokenFile string
	dbPath    string
	output    string
	timeout   time.Duration
	// TLS of an https admin URL: the CA to trust, the client certificate.
	caFile, certFile, keyFile string
}

func (c *cliFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.adminURL, "admin-url", envOr("KEYGATE_ADMIN_URL", "http://127.0.0.1:9192"), "`URL` of the admin API (env KEYGATE_ADMIN_URL)")
	fs.StringVar(&c.tokenFile, "admin-token-file", envOr("KEYGATE_ADMIN_TOKEN_FILE", ""), "`file` holding the admin token (default <db>.admin-token; KEYGATE_ADMIN_TOKEN takes precedence)")
	fs.StringVar(&c.dbPath, "db", envOr("KEYGATE_DB", "keygate.db"), "database `file` whose admin token to use when no token is given (env KEYGATE_DB)")
	fs.StringVar(&c.output, "o", "text", "output `format`: text or json")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Second, "how long to wait for the admin API")
	fs.StringVar(&c.caFile, "tls-ca", envOr("KEYGATE_ADMIN_CA", ""), "PEM `file` of the CA that signed an https admin API's certificate (default: the system's CAs; env KEYGATE_ADMIN_CA)")
	fs.StringVar(&c.certFile, "tls-cert", envOr("KEYGATE_ADMIN_CERT", ""), "PEM `file` of the client certificate to present (env KEYGATE_ADMIN_CERT)")
	fs.StringVar(&c.keyFile, "tls-key", envOr("KEYGATE_ADMIN_KEY", ""), "PEM `file` of the client certificate's key (env KEYGATE_ADMIN_KEY)")
}

// client returns an admin API client, finding the token the way serve saves it.
func (c *cliFlags) client() (*admin.Client, error) {
	if c.output != "text" && c.output != "json" {
		return nil, usagef("-o must be text or json, not %q", c.output)
	}
	token := envOr("KEYGATE_ADMIN_TOKEN", "")
	if token == "" {
		path := c.tokenFile
		if path == "" {
			path = c.dbPath + ".admin-token"
		}
		var err error
		if token, err = readToken(path); err != nil {
			return nil, fmt.Errorf("%w (set KEYGATE_ADMIN_TOKEN, or run where keygate serve keeps its database)", err)
		}
	}
	hc := &http.Client{Timeout: c.timeout}
	if c.caFile != "" || c.certFile != "" || c.keyFile != "" {
		tc, err := clientTLS(c.caFile, c.certFile, c.keyFile)
		if err != nil {
			return nil, fmt.Errorf("admin API TLS: %w", err)
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = tc
		hc.Transport = tr
	}
	return admin.NewClient(c.adminURL, token, hc), nil
}

// command is one admin subcommand: its synopsis, its own flags, and what it
// does with the positional arguments.
type command struct {
	synopsis string
	args     []string
	flags    func(fs *flag.FlagSet)
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
	if h := args[0]; h == "-h" || h == "-help" || h == "--help" || h == "help" {
		groupUsage(stdout)
		return nil
	}
	cmd, ok := cmds[args[0]]
	if !ok {
		groupUsage(stderr)
		return usagef("%s: unknown command %q", group, args[0])
	}
	synopsis := fmt.Sprintf("keygate %s %s", group, args[0])
	for _, a := range cmd.args {
		synopsis += " <" + a + ">"
	}
	fs := newFlagSet(group+" "+args[0], synopsis+" [flags]\n\n"+cmd.synopsis+".", stderr)
	var cf cliFlags
	cf.register(fs)
	if cmd.flags != nil {
		cmd.flags(fs)
	}
	pos, err := parseInterspersed(fs, args[1:])
	if err != nil {
		return err
	}
	if err := wantArgs(pos, cmd.args...); err != nil {
		return err
	}
	client, err := cf.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, cf.timeout)
	defer cancel()
	res, err := cmd.run(ctx, client, pos)
	if err != nil {
		return err
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
func pagingFlags(size *int, token *string) func(fs *flag.FlagSet) {
	return func(fs *flag.FlagSet) {
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
	change := func(debit bool) func(fs *flag.FlagSet) {
		return func(fs *flag.FlagSet) {
			fs.Int64Var(&amount, "amount", 0, "the amount, a positive integer (required)")
			fs.StringVar(&idempotencyKey, "idempotency-key", "", "a `key` that makes a retried request apply once")
			if debit {
				fs.StringVar(&keyID, "key", "", "the key `id` the usage is attributed to")
			}
		}
	}
	cmds := map[string]*command{
		"create": {
			synopsis: "Create an account",
			flags: func(fs *flag.FlagSet) {
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
			synopsis: "Top up an account's balance", args: []string{"account"}, flags: change(false),
			run: byID(func(ctx context.Context, c *admin.Client, id string) (proto.Message, error) {
				return c.CreditAccount(ctx, &adminv1.CreditAccountRequest{Account: id, Amount: amount, IdempotencyKey: idempotencyKey})
			}),
			print: printLedgerEntry,
		},
		"debit": {
			synopsis: "Record usage against an account's balance", args: []string{"account"}, flags: change(true),
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
			synopsis: "Create a key for an account and print its secret once", args: []string{"account"},
			flags: func(fs *flag.FlagSet) {
				fs.StringVar(&name, "name", "", "the key's name, e.g. the application using it (required)")
				fs.StringVar(&expires, "expires", "", "expiry `time` in RFC 3339, e.g. 2027-01-31T00:00:00Z")
				fs.DurationVar(&ttl, "ttl", 0, "expire after this `duration` instead, e.g. 720h")
			},
			run: byID(func(ctx context.Context, c *admin.Client, account string) (proto.Message, error) {
				req := &adminv1.CreateKeyRequest{Account: account, Name: name}
				switch {
				case expires != "" && ttl != 0:
					return nil, usagef("give --expires or --ttl, not both")
				case expires != "":
					t, err := time.Parse(time.RFC3339, expires)
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
			flags: func(fs *flag.FlagSet) {
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
