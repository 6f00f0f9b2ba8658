package resolver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/virtconsole/virtconsole/protocols"
)

// MaxResponseSize bounds the body the Client reads from an external
// resolver.
const MaxResponseSize = 64 << 10

// DefaultClientTimeout is the request timeout of the http.Client that
// NewClient builds when given none.
const DefaultClientTimeout = 30 * time.Second

// Client resolves tokens with an external resolver speaking the REST API
// of the original libvirt-console-proxy: GET <base>/token/<token>.
// Its errors name the base URL only, never the token.
type Client struct {
	base    string // for messages: trailing slash, no credentials
	reqBase string // for requests: base with any userinfo
	hc      *http.Client
}

// NewClient returns a Client for the resolver at baseURL, such as
// https://127.0.0.1:8081/consoleresolver/ (with or without the trailing
// slash). TLS and client certificates come from hc's Transport; nil hc
// means a plain client with DefaultClientTimeout. The Client never follows
// redirects (they could carry the token elsewhere): a 3xx is an error.
func NewClient(baseURL string, hc *http.Client) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("resolver URL %q: want http(s)://host[:port]/path/, e.g. https://127.0.0.1:8081/consoleresolver/", baseURL)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		return nil, fmt.Errorf("resolver URL %q: remove the query or fragment; the token is appended to the path", baseURL)
	}
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
		if u.RawPath != "" {
			u.RawPath += "/"
		}
	}
	var c http.Client
	if hc != nil {
		c = *hc
	} else {
		c.Timeout = DefaultClientTimeout
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	reqBase := u.String()
	u.User = nil // credentials in the URL are used but never echoed
	return &Client{base: u.String(), reqBase: reqBase, hc: &c}, nil
}

// Base returns the resolver's base URL as used in messages (no
// credentials), with a trailing slash.
func (c *Client) Base() string { return c.base }

// Resolve asks the external resolver which console token opens. A 404
// gives an error wrapping ErrNotFound; a 502, 503 or 504, a transport
// failure or a cancelled ctx give one wrapping ErrUnavailable.
func (c *Client) Resolve(ctx context.Context, token string) (protocols.Target, error) {
	t, err := c.resolve(ctx, token)
	if err != nil {
		// The parts are scrubbed where they are formatted; the whole is
		// scrubbed again, as the token could be spelled across two of
		// them (an escape's digits and the text after it).
		return t, &scrubbedError{err: err, msg: scrub(err.Error(), token)}
	}
	return t, nil
}

// scrubbedError is err with its text scrubbed of the token; errors.Is
// and As see err.
type scrubbedError struct {
	err error
	msg string
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.err }

func (c *Client) resolve(ctx context.Context, token string) (protocols.Target, error) {
	if token == "" {
		return protocols.Target{}, fmt.Errorf("resolver %s: %w", c.base, ErrNotFound)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.reqBase+"token/"+url.PathEscape(token), nil)
	if err != nil {
		// The error would quote the URL: do not pass it on.
		return protocols.Target{}, fmt.Errorf("resolver %s: cannot build the request", c.base)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "virtconsole")

	resp, err := c.hc.Do(req)
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return protocols.Target{}, fmt.Errorf("resolver %s: %w: %w", c.base, ErrUnavailable, cerr)
		}
		// *url.Error carries the full URL, token included: keep only
		// the cause, as text, and scrub it anyway.
		cause := err
		var ue *url.Error
		if errors.As(err, &ue) {
			cause = ue.Err
		}
		return protocols.Target{}, fmt.Errorf("resolver %s: %w: %s", c.base, ErrUnavailable, scrub(cause.Error(), token))
	}
	defer func() {
		io.Copy(io.Discard, io.LimitReader(resp.Body, MaxResponseSize))
		resp.Body.Close()
	}()

	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return protocols.Target{}, fmt.Errorf("resolver %s: %w", c.base, ErrNotFound)
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return protocols.Target{}, fmt.Errorf("resolver %s: %w (HTTP %s%s)", c.base, ErrUnavailable,
			scrub(resp.Status, token), reason(resp, token))
	default:
		// The reason phrase is the resolver's own text: it may echo the token.
		return protocols.Target{}, fmt.Errorf("resolver %s: unexpected HTTP %s%s", c.base,
			scrub(resp.Status, token), reason(resp, token))
	}

	if ct := resp.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || !isJSON(mt) {
			// Quote, then scrub: an escape (\x00…) could spell the token.
			return protocols.Target{}, fmt.Errorf("resolver %s: answered with content type %s, want application/json",
				c.base, scrub(strconv.Quote(ct), token))
		}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseSize+1))
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return protocols.Target{}, fmt.Errorf("resolver %s: %w: %w", c.base, ErrUnavailable, cerr)
		}
		return protocols.Target{}, fmt.Errorf("resolver %s: %w: reading the answer: %s", c.base, ErrUnavailable,
			scrub(err.Error(), token))
	}
	if len(body) > MaxResponseSize {
		return protocols.Target{}, fmt.Errorf("resolver %s: answer larger than %d KiB", c.base, MaxResponseSize>>10)
	}
	var con Console
	if err := json.Unmarshal(body, &con); err != nil {
		return protocols.Target{}, fmt.Errorf("resolver %s: answer is not a console JSON object", c.base)
	}
	t, err := con.Target()
	if err != nil {
		return protocols.Target{}, fmt.Errorf("resolver %s: answer has %s", c.base, scrub(err.Error(), token))
	}
	return t, nil
}

// reason returns ": <reason>" from an error answer, a JSON {"error":"…"}
// or a line of plain text, or "".
func reason(resp *http.Response, token string) string {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1025))
	if len(data) > 1024 {
		// A cut body might end in part of an echoed token.
		return ""
	}
	var msg string
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	switch {
	case isJSON(mt):
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(data, &e) == nil {
			msg = e.Error
		}
	case mt == "text/plain":
		msg, _, _ = strings.Cut(string(data), "\n")
	}
	msg = strings.TrimSpace(scrub(msg, token))
	if msg == "" || !utf8.ValidString(msg) {
		return ""
	}
	if len(msg) > 200 {
		msg = msg[:200]
		for !utf8.ValidString(msg) {
			msg = msg[:len(msg)-1]
		}
	}
	// Quote, then scrub: an escape (\x10…) could spell the token.
	return ": " + scrub(strconv.Quote(msg), token)
}

func isJSON(mediaType string) bool {
	return mediaType == "application/json" || mediaType == "text/json" || strings.HasSuffix(mediaType, "+json")
}

// scrub replaces token, in the spellings it may take in a URL, in s.
func scrub(s, token string) string {
	if token == "" {
		return s
	}
	spellings := []string{token, url.PathEscape(token), url.QueryEscape(token)}
	// Longest first, so that an escaped spelling wins over a prefix.
	sort.Slice(spellings, func(i, j int) bool { return len(spellings[i]) > len(spellings[j]) })
	var pairs []string
	for _, v := range spellings {
		pairs = append(pairs, v, "[token]")
	}
	return strings.NewReplacer(pairs...).Replace(s)
}
