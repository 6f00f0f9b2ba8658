package resolver

import (
	"fmt"
	"net"
	"strconv"

	"github.com/virtconsole/virtconsole/protocols"
)

func consoleTarget(c Console) (protocols.Target, error) {
	kind, err := protocols.ParseKind(c.Type)
	if err != nil {
		return protocols.Target{}, err
	}
	if _, err := protocols.ParseRole(c.Role); err != nil {
		return protocols.Target{}, err
	}
	record, err := protocols.ParseRecordPolicy(c.Record)
	if err != nil {
		return protocols.Target{}, err
	}
	host, port, err := net.SplitHostPort(c.Address)
	if err != nil || host == "" {
		return protocols.Target{}, fmt.Errorf("address %q: want host:port", c.Address)
	}
	if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
		return protocols.Target{}, fmt.Errorf("address %q: port must be 1-65535", c.Address)
	}
	return protocols.Target{
		Kind:      kind,
		Address:   c.Address,
		Insecure:  c.Insecure,
		TLSTunnel: c.TLSTunnel,
		Password:  c.Password,
		Role:      protocols.Role(c.Role), // "" stays "": FromTarget gives back what it got
		Record:    record,
	}, nil
}
