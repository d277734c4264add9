package main

import (
	"fmt"
	"os"
	"runtime/pprof"
)

// withCPUProfile runs fn, writing a CPU profile of the whole run to the file
// that KEYGATE_CPUPROFILE names, if it names one. The benchmark uses it to
// show where a Check's time goes.
func withCPUProfile(fn func() error) error {
	path := os.Getenv("KEYGATE_CPUPROFILE")
	if path == "" {
		return fn()
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("cpu profile: %w", err)
	}
	defer f.Close()
	if err := pprof.StartCPUProfile(f); err != nil {
		return fmt.Errorf("cpu profile: %w", err)
	}
	err = fn()
	pprof.StopCPUProfile()
	return err
}
