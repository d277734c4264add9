package main

import (
	"os"
	"syscall"
	"time"
)

// fileStamp tells whether a file has changed since it was read: a new
// inode (a file renamed over it), size or modification time. The zero
// fileStamp stands for a file that could not be looked at.
type fileStamp struct {
	ino  uint64
	size int64
	mod  time.Time
}

// stampOf returns the stamp of the file at path.
func stampOf(path string) fileStamp {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}
	}
	s := fileStamp{size: fi.Size(), mod: fi.ModTime()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.ino = st.Ino
	}
	return s
}
