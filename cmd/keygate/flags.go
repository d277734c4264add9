package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"
)

// envPrefix starts every environment variable keygate reads.
const envPrefix = "KEYGATE_"

// envName is the environment variable of the flag called name: KEYGATE_ and
// the name in upper snake case.
func envName(name string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// flagSet is a flag.FlagSet whose flags may also be set from environment
// variables and, when it has a --config flag, from a YAML file: flags win
// over the environment, the environment over the file, the file over the
// defaults.
type flagSet struct {
	*flag.FlagSet
	synopsis string
	help     io.Writer         // where --help prints the usage
	env      map[string]string // flag name → the variable it reads
	config   *string           // the --config flag, nil without one
}

// newFlagSet returns a flagSet for the command line synopsis, whose first
// line is the command's usage line; --help prints the usage to help.
func newFlagSet(name, synopsis string, help io.Writer) *flagSet {
	fs := &flagSet{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError), synopsis: synopsis, help: help, env: map[string]string{}}
	fs.SetOutput(io.Discard) // parse errors are returned, and usage printed by printUsage
	return fs
}

// bindEnvAll makes every flag defined so far read its environment variable.
func (fs *flagSet) bindEnvAll() {
	fs.VisitAll(func(f *flag.Flag) { fs.env[f.Name] = envName(f.Name) })
}

// bindEnv makes the flag called name read the environment variable env.
func (fs *flagSet) bindEnv(name, env string) { fs.env[name] = env }

// withConfigFile defines --config, the YAML file of defaults.
func (fs *flagSet) withConfigFile() {
	fs.config = fs.String("config", "", "YAML `file` of settings, keyed by flag name (flags and the environment take precedence)")
}

// parse parses args, flags before, between or after the positional
// arguments, then the environment and the config file, and returns the
// positional arguments. A value that does not parse is a usage error
// naming where it came from.
func (fs *flagSet) parse(args []string) ([]string, error) {
	pos, err := fs.parseArgs(args)
	if err != nil {
		return nil, err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for name, env := range fs.env {
		if v, ok := os.LookupEnv(env); ok && v != "" && !set[name] {
			if err := fs.Set(name, v); err != nil {
				return nil, usagef("%s=%q: %v", env, v, valueError(err))
			}
			set[name] = true
		}
	}
	if fs.config != nil && *fs.config != "" {
		if err := fs.loadFile(*fs.config, set); err != nil {
			return nil, err
		}
	}
	return pos, nil
}

// parseArgs parses the command line, flags interspersed with positional
// arguments until "--".
func (fs *flagSet) parseArgs(args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fs.printUsage(fs.help)
				return nil, err
			}
			return nil, usageError{fmt.Sprintf("%v\nRun \"keygate %s --help\" for its flags.", err, fs.Name())}
		}
		args = fs.Args()
		if len(args) == 0 {
			return positional, nil
		}
		if args[0] == "--" {
			return append(positional, args[1:]...), nil
		}
		positional = append(positional, args[0])
		args = args[1:]
	}
}

// loadFile sets the flags that the YAML file at path names and that are
// not in set. Each value is given to its flag as written, so that a flag's
// own parser, not YAML's, reads it: "yes" is not a boolean. A key that
// names no flag, or comes twice, is an error.
func (fs *flagSet) loadFile(path string, set map[string]bool) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return usagef("config file %s: %v", path, err)
	}
	if len(doc.Content) == 0 {
		return nil // an empty file
	}
	m := doc.Content[0]
	if m.Kind != yaml.MappingNode {
		return usagef("config file %s: want a mapping of flag names to values", path)
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		switch {
		case fs.Lookup(k.Value) == nil || k.Value == "config":
			return usagef("config file %s, line %d: unknown setting %q", path, k.Line, k.Value)
		case seen[k.Value]:
			return usagef("config file %s, line %d: %s is given twice", path, k.Line, k.Value)
		case v.Kind != yaml.ScalarNode:
			return usagef("config file %s, line %d: %s: want a string, number or boolean", path, v.Line, k.Value)
		}
		seen[k.Value] = true
		if set[k.Value] {
			continue
		}
		if err := fs.Set(k.Value, v.Value); err != nil {
			return usagef("config file %s, line %d: %s: %q: %v", path, v.Line, k.Value, v.Value, valueError(err))
		}
	}
	return nil
}

// valueError is the message of a flag.Value's Set error; a boolean's says
// which values it takes.
func valueError(err error) error {
	if err.Error() == "parse error" { // flag's boolValue, which hides strconv's error
		return errors.New("want true or false (or 1, 0, t, f, TRUE, FALSE)")
	}
	return err
}

// printUsage writes the synopsis and the flags, each with its default and
// environment variable, to w.
func (fs *flagSet) printUsage(w io.Writer) {
	fmt.Fprintf(w, "Usage: %s\n", fs.synopsis)
	first := true
	fs.VisitAll(func(f *flag.Flag) {
		if first {
			fmt.Fprintln(w, "\nFlags:")
			first = false
		}
		typ, help := flag.UnquoteUsage(f)
		dash := "--"
		if len(f.Name) == 1 {
			dash = "-"
		}
		if typ != "" {
			typ = " " + typ
		}
		fmt.Fprintf(w, "  %s%s%s\n    \t%s%s\n", dash, f.Name, typ, help, fs.notes(f))
	})
}

// notes is the default and the environment variable of f, in parentheses.
func (fs *flagSet) notes(f *flag.Flag) string {
	var n []string
	if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "false" {
		n = append(n, "default "+f.DefValue)
	}
	if env := fs.env[f.Name]; env != "" {
		n = append(n, "env "+env)
	}
	if len(n) == 0 {
		return ""
	}
	return " (" + strings.Join(n, "; ") + ")"
}

// wantArgs checks the positional arguments against names, the arguments
// the command takes.
func wantArgs(cmd string, args []string, names ...string) error {
	switch {
	case len(args) == len(names):
		return nil
	case len(names) == 0:
		return usagef("%s takes no arguments, got %q", cmd, args)
	case len(args) < len(names):
		return usagef("%s: missing %s", cmd, strings.Join(names[len(args):], " "))
	}
	return usagef("%s takes %s, got %d arguments: %q", cmd, strings.Join(names, " "), len(args), args)
}
