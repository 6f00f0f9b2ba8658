package web

import (
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"
)

// Browsers do not show a page the HTTP answer to a refused websocket, so
// a page sends a "refusal" cookie with its websocket: a random id of its
// own (no secret: it opens nothing). When the proxy refuses that
// websocket, Refusals keeps the one-line reason under the id for a
// minute, and the page reads it from "refusal?id=ID" beside itself.

// refusalTTL is how long a reason is kept; refusalMax bounds how many.
const (
	refusalTTL = time.Minute
	refusalMax = 1000
)

var refusalIDRE = regexp.MustCompile(`^[0-9a-f]{32}$`)

// Refusals holds the proxy's recent refusals of the pages' websockets,
// by their refusal ids. The zero value is ready to use; it is safe for
// concurrent use.
type Refusals struct {
	mu    sync.Mutex
	byID  map[string]refusal
	order []string // ids, oldest first
}

type refusal struct {
	reason string
	at     time.Time
}

// Wrap returns an ErrorHandler (as tunnel/proxy's) that keeps the reason
// of a request carrying a refusal cookie, then answers with next.
func (rs *Refusals) Wrap(next func(http.ResponseWriter, *http.Request, error)) func(http.ResponseWriter, *http.Request, error) {
	return func(w http.ResponseWriter, r *http.Request, err error) {
		if c, cerr := r.Cookie("refusal"); cerr == nil && refusalIDRE.MatchString(c.Value) {
			rs.add(c.Value, strings.SplitN(err.Error(), "\n", 2)[0], time.Now())
		}
		next(w, r, err)
	}
}

func (rs *Refusals) add(id, reason string, now time.Time) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.byID == nil {
		rs.byID = map[string]refusal{}
	}
	if _, ok := rs.byID[id]; !ok {
		rs.order = append(rs.order, id)
	}
	rs.byID[id] = refusal{reason: reason, at: now}
	for len(rs.order) > 0 && (len(rs.order) > refusalMax || now.Sub(rs.byID[rs.order[0]].at) > refusalTTL) {
		delete(rs.byID, rs.order[0])
		rs.order = rs.order[1:]
	}
}

// reason returns the reason kept under id, if it is recent.
func (rs *Refusals) reason(id string, now time.Time) (string, bool) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	f, ok := rs.byID[id]
	if !ok || now.Sub(f.at) > refusalTTL {
		return "", false
	}
	return f.reason, true
}

// serve answers GET refusal?id=ID with the reason as one line of text,
// or 404.
func (rs *Refusals) serve(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("id")
	if rs == nil || !refusalIDRE.MatchString(id) {
		http.Error(w, "no such refusal", http.StatusNotFound)
		return
	}
	reason, ok := rs.reason(id, time.Now())
	if !ok {
		http.Error(w, "no such refusal", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write([]byte(reason + "\n"))
}
