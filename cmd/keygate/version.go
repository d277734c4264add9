package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// version and commit are set by the build (make build stamps them from git
// with -ldflags -X); when empty, the build info's module version and
// vcs.revision stand in for them.
var version, commit string

// runVersion prints keygate's version, commit and Go version.
func runVersion(_ context.Context, args []string, stdout, _ io.Writer) error {
	fs := newFlagSet("version", "keygate version\n\nShows keygate's version, the commit it was built from and the Go version.", stdout)
	pos, err := fs.parse(args)
	if err != nil {
		return err
	}
	if err := wantArgs("version", pos); err != nil {
		return err
	}
	v, c := buildVersion()
	fmt.Fprintf(stdout, "keygate %s\ncommit %s\n%s\n", v, c, runtime.Version())
	return nil
}

// buildVersion returns the version and commit keygate was built from,
// "unknown" for what the build did not record (go build -buildvcs=false
// records no commit).
func buildVersion() (v, c string) {
	v, c = version, commit
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v == "" && bi.Main.Version != "" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && c == "" {
				c = s.Value
			}
		}
	}
	if v == "" {
		v = "unknown"
	}
	if c == "" {
		c = "unknown"
	}
	return v, c
}
