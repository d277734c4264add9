package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/keygate/keygate/store/bolt"
)

// dbOpenError says why the database at path could not be opened and what
// the operator can do about it, on one line.
func dbOpenError(err error, path string) error {
	var hint string
	switch {
	case errors.Is(err, bolt.ErrLocked):
		hint = "stop the other keygate serve, or give --db another file"
	case errors.Is(err, bolt.ErrNewerSchema):
		hint = "keygate left the file as it is"
	case errors.Is(err, fs.ErrPermission):
		hint = fmt.Sprintf("run keygate as a user who may read and write %s and create files in %s, or give --db another path", path, filepath.Dir(path))
	case errors.Is(err, syscall.ENOSPC):
		hint = "free space on the database's disk"
	case nonEmptyFile(path):
		hint = "keygate left the file as it is: restore it from a backup, or give --db a new path to start afresh"
	default:
		return fmt.Errorf("open database: %w", err)
	}
	return fmt.Errorf("open database: %w; %s", err, hint)
}

func nonEmptyFile(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Size() > 0
}
