// Package spicetest is the scripted SPICE viewer the tests use: package
// spiceclient's, by the names the tests know.
package spicetest

import "github.com/virtconsole/virtconsole/protocols/spice/spiceclient"

// The viewer, its link options and message framing (see spiceclient).
type (
	Client      = spiceclient.Client
	LinkOptions = spiceclient.LinkOptions
	Message     = spiceclient.Message
)

// Sizes on the wire and the common caps a viewer sets.
const (
	LinkHeaderLen = spiceclient.LinkHeaderLen
	MiniHeaderLen = spiceclient.MiniHeaderLen
	FullHeaderLen = spiceclient.FullHeaderLen
)

var (
	ViewerCaps = spiceclient.ViewerCaps
	Caps       = spiceclient.Caps
	Link       = spiceclient.Link
	Open       = spiceclient.Open
)
