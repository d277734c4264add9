//go:build !linux

package keyindex

import "unsafe"

// hugePages does nothing: transparent huge pages are Linux's.
func hugePages(unsafe.Pointer, uintptr) {}
