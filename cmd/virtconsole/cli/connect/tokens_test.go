package connect

import (
	"context"
	"fmt"
	"testing"
)

func counter() (func(context.Context) (string, error), *int) {
	n := 0
	return func(context.Context) (string, error) { n++; return fmt.Sprint("tok", n), nil }, &n
}

// Per-connection protocols (VNC) get a fresh token for every connection.
func TestTokenPerConnection(t *testing.T) {
	fetch, _ := counter()
	ts := &tokenSource{fetch: fetch, current: "tok0"}
	a, doneA, _ := ts.get(context.Background())
	b, doneB, _ := ts.get(context.Background())
	doneA()
	doneB()
	c, _, _ := ts.get(context.Background())
	if a != "tok0" || b != "tok1" || c != "tok2" {
		t.Fatalf("tokens %q %q %q", a, b, c)
	}
}

// SPICE: connections open at once share a token; a new session after all
// closed gets a fresh one.
func TestTokenPerSession(t *testing.T) {
	fetch, _ := counter()
	ts := &tokenSource{fetch: fetch, current: "tok0", spans: true}
	a, doneA, _ := ts.get(context.Background())
	b, doneB, _ := ts.get(context.Background())
	doneA()
	c, doneC, _ := ts.get(context.Background()) // session still live (b open)
	doneB()
	doneC()
	d, _, _ := ts.get(context.Background())
	if a != "tok0" || b != "tok0" || c != "tok0" || d != "tok1" {
		t.Fatalf("tokens %q %q %q %q", a, b, c, d)
	}
}

func TestFixedToken(t *testing.T) {
	ts := &tokenSource{fixed: "f"}
	for i := 0; i < 3; i++ {
		if tok, done, _ := ts.get(context.Background()); tok != "f" {
			t.Fatal(tok)
		} else {
			done()
		}
	}
}
