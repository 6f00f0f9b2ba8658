//go:build !unix

package resolver

import "io/fs"

func inodeOf(fs.FileInfo) uint64 { return 0 }
