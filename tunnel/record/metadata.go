package record

import (
	"encoding/json"
	"time"
)

// A SPICE session's recording is metadata only (FormatMetadata,
// DIR/T-spice-ID.jsonl): its display, inputs and other channels are not
// recorded, only that the session happened. Each SPICE channel is a
// session of its own (a websocket), so a viewer leaves one file per
// channel. The file is two lines of JSON: the header (an RFBHeader with
// format "virtconsole-metadata": the start and the Identity), written
// when the session opens, and a SessionEnd when it ends; it is closed
// with a signed manifest like the others. A file with only the header
// was cut short.
const (
	FormatMetadata  = "virtconsole-metadata"
	metadataVersion = 1
)

// SessionEnd is a metadata recording's second line.
type SessionEnd struct {
	End              time.Time `json:"end"`
	Channel          string    `json:"channel,omitempty"`       // the SPICE channel, e.g. "display:0"
	SPICESession     string    `json:"spice_session,omitempty"` // the SPICE session the channel belongs to
	BytesToConsole   int64     `json:"bytes_to_console"`
	BytesFromConsole int64     `json:"bytes_from_console"`
	Outcome          string    `json:"outcome,omitempty"`
	Reason           string    `json:"reason,omitempty"`
}

// jsonLine appends v as a line of JSON.
func (c *castWriter) jsonLine(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	c.out = append(append(c.out, b...), '\n')
	return nil
}
