package resolver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/virtconsole/virtconsole/protocols"
)

// The exact JSON shape the original libvirt-console-proxy exchanges.
const originalWire = `{"type":"vnc","address":"127.0.0.1:5901","insecure":false,"tlsTunnel":false,"password":"x"}`

func TestWireCompatibility(t *testing.T) {
	var c Console
	if err := json.Unmarshal([]byte(originalWire), &c); err != nil {
		t.Fatal(err)
	}
	want := Console{Type: "vnc", Address: "127.0.0.1:5901", Password: "x"}
	if c != want {
		t.Fatalf("decoded %+v, want %+v", c, want)
	}
	tg, err := c.Target()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(tg, protocols.Target{Kind: protocols.KindVNC, Address: "127.0.0.1:5901", Password: "x"}) {
		t.Fatalf("target %+v", tg)
	}
	// Encoding gives back exactly the original shape.
	out, err := json.Marshal(FromTarget(tg))
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != originalWire {
		t.Fatalf("encoded %s, want %s", out, originalWire)
	}
	// Without a password the field is left out, as the original did.
	out, _ = json.Marshal(Console{Type: "serial", Address: "127.0.0.1:4555", Insecure: true})
	if string(out) != `{"type":"serial","address":"127.0.0.1:4555","insecure":true,"tlsTunnel":false}` {
		t.Fatalf("encoded %s", out)
	}
}

// tokens used over HTTP, including characters that need escaping in a
// path.
var httpTokens = map[string]Console{
	tokA:                  {Type: "vnc", Address: "127.0.0.1:5901", Password: "x"},
	tokB + "/../?#% +&=é": {Type: "serial", Address: "[::1]:4555", Insecure: true},
	tokC:                  {Type: "spice", Address: "qemu.example:5902", TLSTunnel: true},
	tokD:                  {Type: "serial", Address: "127.0.0.1:4556", Role: "view"},
}

func newStaticForHTTP(t *testing.T) *Static {
	t.Helper()
	s, err := NewStatic(httpTokens)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// checkNoToken fails if err's message holds any test token.
func checkNoToken(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	for _, tok := range []string{tokA, tokB, tokC, "SECRET"} {
		if strings.Contains(err.Error(), tok) {
			t.Errorf("error contains a token: %q", err)
		}
	}
}

func TestClientHandlerRoundTrip(t *testing.T) {
	static := newStaticForHTTP(t)
	mux := http.NewServeMux()
	mux.Handle("/consoleresolver/", NewHandler(static, nil))

	for _, useTLS := range []bool{false, true} {
		srv := httptest.NewUnstartedServer(mux)
		if useTLS {
			srv.StartTLS()
		} else {
			srv.Start()
		}
		defer srv.Close()
		for _, base := range []string{srv.URL + "/consoleresolver/", srv.URL + "/consoleresolver"} {
			name := fmt.Sprintf("tls=%v/%s", useTLS, strings.TrimPrefix(base, srv.URL))
			t.Run(name, func(t *testing.T) {
				c, err := NewClient(base, srv.Client())
				if err != nil {
					t.Fatal(err)
				}
				if !strings.HasSuffix(c.Base(), "/consoleresolver/") {
					t.Errorf("Base() = %q", c.Base())
				}
				for tok, con := range httpTokens {
					got, err := c.Resolve(context.Background(), tok)
					if err != nil {
						t.Fatalf("Resolve: %v", err)
					}
					want, _ := con.Target()
					if !reflect.DeepEqual(got, want) {
						t.Errorf("got %+v, want %+v", got, want)
					}
				}
				_, err = c.Resolve(context.Background(), tokA+"-unknown")
				if !errors.Is(err, ErrNotFound) {
					t.Errorf("unknown token: err = %v, want ErrNotFound", err)
				}
				checkNoToken(t, err)
				_, err = c.Resolve(context.Background(), "")
				if !errors.Is(err, ErrNotFound) {
					t.Errorf("empty token: err = %v, want ErrNotFound", err)
				}
			})
		}
	}
}

func TestClientHandlerMountedAtRoot(t *testing.T) {
	srv := httptest.NewServer(NewHandler(newStaticForHTTP(t), nil))
	defer srv.Close()
	for _, base := range []string{srv.URL, srv.URL + "/", srv.URL + "/consoleresolver/"} {
		c, err := NewClient(base, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Resolve(context.Background(), tokA); err != nil {
			t.Errorf("base %s: %v", base, err)
		}
	}
}

func TestClientUnavailable(t *testing.T) {
	down := ResolverFunc(func(context.Context, string) (protocols.Target, error) {
		return protocols.Target{}, fmt.Errorf("libvirtd: connection lost: %w", ErrUnavailable)
	})
	srv := httptest.NewServer(NewHandler(down, nil))
	defer srv.Close()
	c, err := NewClient(srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Resolve(context.Background(), tokA)
	if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	if !strings.Contains(err.Error(), "503") {
		t.Errorf("err = %v, want it to name the status", err)
	}
	checkNoToken(t, err)
}

func TestClientTransportErrors(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there any more

	c, err := NewClient(url+"/consoleresolver/", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Resolve(context.Background(), tokA)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	if !strings.Contains(err.Error(), url+"/consoleresolver/") {
		t.Errorf("err = %v, want it to name the base URL", err)
	}
	checkNoToken(t, err)
	t.Log(err)

	// A transport whose error quotes the whole URL, as *url.Error and many
	// round trippers do: the token must still not come out.
	leaky := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		return nil, fmt.Errorf("proxy refused %s (path %s)", r.URL, r.URL.Path)
	})}
	c, err = NewClient("https://resolver.example/consoleresolver/", leaky)
	if err != nil {
		t.Fatal(err)
	}
	for tok := range httpTokens {
		_, err = c.Resolve(context.Background(), tok)
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("err = %v, want ErrUnavailable", err)
		}
		checkNoToken(t, err)
		walkErrors(err, func(e error) { checkNoToken(t, e) })
	}
	t.Log(err)

	// Cancelled context.
	block := make(chan struct{})
	defer close(block)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	c, err = NewClient(slow.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		// Cancel once the request is in flight or not: either way
		// Resolve must return promptly with the context's error.
		cancel()
	}()
	_, err = c.Resolve(ctx, tokA)
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want ErrUnavailable and context.Canceled", err)
	}
	checkNoToken(t, err)
}

// walkErrors calls f on err and on every error it wraps.
func walkErrors(err error, f func(error)) {
	if err == nil {
		return
	}
	f(err)
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		walkErrors(u.Unwrap(), f)
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			walkErrors(e, f)
		}
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestClientBadAnswers(t *testing.T) {
	cases := []struct {
		name    string
		handler http.HandlerFunc
		want    string
		is      error
	}{
		{"garbage JSON", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"type":"vnc","address":`)
		}, "not a console JSON object", nil},
		{"not JSON at all", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, "<html>"+r.URL.Path+"</html>")
		}, "not a console JSON object", nil},
		{"wrong content type", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			io.WriteString(w, originalWire)
		}, `content type "text/html"`, nil},
		{"oversize body", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"type":"vnc","address":"127.0.0.1:5901","pad":"`)
			io.WriteString(w, strings.Repeat("x", MaxResponseSize))
			io.WriteString(w, `"}`)
		}, "larger than 64 KiB", nil},
		{"invalid console", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"type":"rdp","address":"127.0.0.1:5901"}`)
		}, `unknown console type "rdp"`, nil},
		{"console echoing the token", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			tok := r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
			fmt.Fprintf(w, `{"type":%q,"address":"127.0.0.1:5901"}`, tok)
		}, "unknown console type", nil},
		{"server error", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprintf(w, `{"error":"database on fire while looking up %s"}`, r.URL.Path)
		}, "unexpected HTTP 500 Internal Server Error", nil},
		{"forbidden", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "client certificate required", http.StatusForbidden)
		}, `unexpected HTTP 403 Forbidden: "client certificate required"`, nil},
		{"redirect not followed", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "https://elsewhere.example"+r.URL.Path, http.StatusFound)
		}, "unexpected HTTP 302", nil},
		{"bad gateway", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusBadGateway)
		}, "502", ErrUnavailable},
		{"not found plain text", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "No token found", http.StatusNotFound) // the original's answer
		}, "unknown token", ErrNotFound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.handler)
			defer srv.Close()
			c, err := NewClient(srv.URL+"/consoleresolver", nil)
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Resolve(context.Background(), tokA)
			if err == nil {
				t.Fatal("Resolve succeeded")
			}
			t.Log(err)
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %q, want it to contain %q", err, tc.want)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("err = %v, want it to wrap %v", err, tc.is)
			}
			if tc.is == nil && (errors.Is(err, ErrNotFound) || errors.Is(err, ErrUnavailable)) {
				t.Errorf("err = %v wraps a sentinel it should not", err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("err is not one line: %q", err)
			}
			checkNoToken(t, err)
		})
	}
}

func TestClientOriginalServerAnswer(t *testing.T) {
	// The original resolver answers exactly this; so may others, with or
	// without a charset.
	for _, ct := range []string{"application/json", "application/json; charset=utf-8", ""} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/consoleresolver/token/"+tokA || r.Method != http.MethodGet {
				http.NotFound(w, r)
				return
			}
			if ct != "" {
				w.Header().Set("Content-Type", ct)
			} else {
				w.Header()["Content-Type"] = nil // suppress sniffing
			}
			io.WriteString(w, originalWire)
		}))
		c, err := NewClient(srv.URL+"/consoleresolver/", nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.Resolve(context.Background(), tokA)
		srv.Close()
		if err != nil {
			t.Fatalf("content type %q: %v", ct, err)
		}
		if !reflect.DeepEqual(got, protocols.Target{Kind: protocols.KindVNC, Address: "127.0.0.1:5901", Password: "x"}) {
			t.Errorf("got %+v", got)
		}
	}
}

func TestNewClientBadURL(t *testing.T) {
	for _, u := range []string{
		"",
		"127.0.0.1:8081",
		"ftp://h/x",
		"https://",
		"https://h/x?a=b",
		"https://h/x#frag",
		"://bad",
	} {
		if _, err := NewClient(u, nil); err == nil {
			t.Errorf("NewClient(%q) succeeded", u)
		}
	}
	c, err := NewClient("https://user:pw@h:8081/consoleresolver", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Base() != "https://h:8081/consoleresolver/" {
		t.Errorf("Base() = %q, want credentials left out", c.Base())
	}
}
