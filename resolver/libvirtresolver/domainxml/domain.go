package domainxml

import (
	"fmt"

	"libvirt.org/go/libvirtxml"
)

// Domain is what the console code reads from a domain's XML.
type Domain struct {
	// ID is the running instance's ID; 0 when the domain is not running.
	ID int
	// Metadata is the console-proxy metadata, nil when there is none.
	Metadata *Metadata
	Devices  []Device
}

// Running reports whether the XML is a running domain's.
func (d *Domain) Running() bool { return d.ID > 0 }

// Parse reads a domain's XML (as DomainGetXMLDesc returns it). Errors say
// whether the XML or the metadata in it is malformed.
func Parse(xml string) (*Domain, error) {
	var def libvirtxml.Domain
	if err := def.Unmarshal(xml); err != nil {
		return nil, fmt.Errorf("parse XML: %w", err)
	}
	d := &Domain{Devices: Devices(&def)}
	if def.ID != nil && *def.ID > 0 {
		d.ID = *def.ID
	}
	if def.Metadata != nil {
		m, err := ParseMetadata(def.Metadata.XML)
		if err != nil {
			return nil, err
		}
		d.Metadata = m
	}
	return d, nil
}
