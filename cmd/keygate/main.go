// Command keygate is an API-key gate for Envoy's ext_authz filter.
//
// It holds three programs: "keygate serve" (serve*.go) runs the Check
// service and the admin API on a bbolt file or an etcd cluster; "keygate
// account" and "keygate key" (cli*.go) are the admin CLI, a client of that
// API; "keygate import" and "keygate migrate" (import.go, migrate.go) work
// on a store offline. Run "keygate help" for the list.
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
  keygate version                    show the version, commit and Go version
  keygate help [command]             show help

Run "keygate <command> --help" for the flags of a command.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// commands are keygate's subcommands, by name.
var commands = map[string]func(ctx context.Context, args []string, stdout, stderr io.Writer) error{
	"serve": func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
		return withCPUProfile(func() error { return runServe(ctx, args, stdout, stderr) })
	},
	"account":  runAccount,
	"accounts": runAccount,
	"key":      runKey,
	"keys":     runKey,
	"import":   runImport,
	"migrate":  runMigrate,
	"version":  runVersion,
}

// run executes one keygate command line and returns the process exit code:
// 0 on success, 2 for a usage error, 1 for any other failure.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	switch {
	case cmd == "--version" || cmd == "-version":
		cmd = "version"
	case isHelp(cmd) && len(rest) > 0 && commands[rest[0]] != nil:
		// "keygate help serve": the command's own help.
		cmd, rest = rest[0], []string{"--help"}
	case isHelp(cmd) && len(rest) > 0 && !isHelp(rest[0]):
		fmt.Fprintf(stderr, "keygate: no help for %q: no such command\n\n%s", rest[0], usage)
		return 2
	case isHelp(cmd):
		fmt.Fprint(stdout, usage)
		return 0
	}
	run := commands[cmd]
	if run == nil {
		fmt.Fprintf(stderr, "keygate: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	err := run(ctx, rest, stdout, stderr)
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, new(usageError)):
		fmt.Fprintf(stderr, "keygate: %v\n", err)
		return 2
	default:
		fmt.Fprintf(stderr, "keygate: %v\n", err)
		return 1
	}
}

// isHelp reports whether arg asks for help.
func isHelp(arg string) bool {
	return arg == "help" || arg == "-h" || arg == "-help" || arg == "--help"
}

// usageError is a mistake in the command line.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return usageError{fmt.Sprintf(format, args...)}
}
