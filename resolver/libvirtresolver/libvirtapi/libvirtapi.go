// Package libvirtapi is how the resolver and the admin operations talk to
// libvirtd. Libvirt is the narrow interface they call: the go-libvirt
// methods they use and no others, with go-libvirt's own types and errors,
// so that a *libvirt.Libvirt implements it as it is and package
// libvirtfake can stand in for it in unit tests (a Connector injects
// either). Connect opens one over a libvirt URI's transport; its failures
// are ConnectErrors (ErrUnreachable). The rest is small vocabulary shared
// by the packages beside it: ErrDomainNotFound, UUIDs, one-line messages.
package libvirtapi

import (
	"context"

	libvirt "github.com/digitalocean/go-libvirt"
)

// Libvirt is one connection to libvirtd. Methods have go-libvirt's
// meaning; the comments group them by what they serve.
type Libvirt interface {
	// Domains: list, look up, read.
	ConnectListAllDomains(needResults int32, flags libvirt.ConnectListAllDomainsFlags) ([]libvirt.Domain, uint32, error)
	DomainLookupByUUID(uuid libvirt.UUID) (libvirt.Domain, error)
	DomainLookupByID(id int32) (libvirt.Domain, error)
	DomainLookupByName(name string) (libvirt.Domain, error)
	DomainGetXMLDesc(dom libvirt.Domain, flags libvirt.DomainXMLFlags) (string, error)
	DomainIsPersistent(dom libvirt.Domain) (int32, error)

	// The console-proxy metadata.
	DomainGetMetadata(dom libvirt.Domain, typ int32, uri libvirt.OptString, flags libvirt.DomainModificationImpact) (string, error)
	DomainSetMetadata(dom libvirt.Domain, typ int32, metadata, key, uri libvirt.OptString, flags libvirt.DomainModificationImpact) error

	// Secrets, whose values are the tokens.
	ConnectListAllSecrets(needResults int32, flags libvirt.ConnectListAllSecretsFlags) ([]libvirt.Secret, uint32, error)
	SecretLookupByUUID(uuid libvirt.UUID) (libvirt.Secret, error)
	SecretGetValue(s libvirt.Secret, flags uint32) ([]byte, error)
	SecretSetValue(s libvirt.Secret, value []byte, flags uint32) error
	SecretDefineXML(xml string, flags uint32) (libvirt.Secret, error)
	SecretUndefine(s libvirt.Secret) error
	SecretGetXMLDesc(s libvirt.Secret, flags uint32) (string, error)

	// Events. The channels close when the connection ends.
	LifecycleEvents(ctx context.Context) (<-chan libvirt.DomainEventLifecycleMsg, error)
	SubscribeEvents(ctx context.Context, id libvirt.DomainEventID, dom libvirt.OptDomain) (<-chan any, error)

	// The connection itself.
	Disconnected() <-chan struct{}
	IsConnected() bool
	Disconnect() error
}

var _ Libvirt = (*libvirt.Libvirt)(nil)

// Connector opens a connection to the libvirtd of a libvirt URI. By
// default the resolver and the admin operations connect with go-libvirt
// over the URI's transport; tests pass a libvirtfake.Hypervisor's Connect.
// Callers wrap its errors with the URI.
type Connector func(ctx context.Context, uri string) (Libvirt, error)
