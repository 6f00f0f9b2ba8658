//go:build unix

package resolver

import (
	"io/fs"
	"syscall"
)

func inodeOf(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Ino)
	}
	return 0
}

// readableByOthers returns the read permission bits of fi that its group
// and others have.
func readableByOthers(fi fs.FileInfo) fs.FileMode {
	return fi.Mode().Perm() & 0o044
}
