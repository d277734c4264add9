// Command keygate is an API-key gate for Envoy's ext_authz filter.
//
// "keygate serve" runs the Check service and the admin API on an embedded
// bbolt store; the other subcommands are the admin CLI. Run "keygate help"
// for the list.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `keygate: an API-key gate for Envoy ext_authz.

Usage:
  keygate serve [flags]              run the Check service and the admin API
  keygate account <command> [flags]  manage accounts and balances
  keygate key <command> [flags]      manage API keys
  keygate import [flags] FILE        load accounts and keys from JSON Lines
  keygate migrate [flags]            copy a bbolt database into etcd, or back
  keygate help [command]             show help

Run "keygate <command> --help" for the flags of a command.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run executes one keygate command line and returns the process exit code:
// 0 on success, 2 for a usage error, 1 for any other failure.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "serve":
		err = withCPUProfile(func() error { return runServe(ctx, rest, stderr) })
	case "account", "accounts":
		err = runAccount(ctx, rest, stdout, stderr)
	case "key", "keys":
		err = runKey(ctx, rest, stdout, stderr)
	case "import":
		err = runImport(ctx, rest, stdout, stderr)
	case "migrate":
		err = runMigrate(ctx, rest, stdout, stderr)
	case "help", "-h", "-help", "--help":
		if len(rest) > 0 {
			return run(ctx, []string{rest[0], "--help"}, stdout, stderr)
		}
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "keygate: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, new(usageError)):
		fmt.Fprintf(stderr, "keygate: %v\n", err)
		return 2
	default:
		fmt.Fprintf(stderr, "keygate: %v\n", err)
		return 1
	}
}

// usageError is a mistake in the command line.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return usageError{fmt.Sprintf(format, args...)}
}
