//go:build !unix

package resolver

import "io/fs"

func inodeOf(fs.FileInfo) uint64 { return 0 }

// readableByOthers is 0 where permission bits do not say who can read a
// file (e.g. Windows, whose ACLs they do not reflect).
func readableByOthers(fs.FileInfo) fs.FileMode { return 0 }
