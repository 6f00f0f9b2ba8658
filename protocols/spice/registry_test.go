package spice

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is an injectable clock.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

// regStep is one step of a registry scenario.
type regStep struct {
	op     string // admit, observe, close, wait, state
	token  string // default "A"
	single bool
	lease  string // name a lease is stored under (admit) or taken from
	link   Link
	info   MainInfo
	wait   time.Duration
	want   LinkError  // admit: LinkOK when admitted, else the refusal's code
	state  TokenState // state: expected
}

func mainLink() Link { return Link{ChannelType: ChannelMain} }
func chanLink(id uint32, ch ChannelID) Link {
	return Link{ConnectionID: id, ChannelType: ch.Type, ChannelID: ch.ID}
}

var (
	display0  = ChannelID{ChannelDisplay, 0}
	display1  = ChannelID{ChannelDisplay, 1}
	inputs0   = ChannelID{ChannelInputs, 0}
	cursor0   = ChannelID{ChannelCursor, 0}
	usbredir0 = ChannelID{ChannelUSBRedir, 0}
	webdav0   = ChannelID{ChannelWebDAV, 0}
)

func admit(lease string, l Link) regStep { return regStep{op: "admit", lease: lease, link: l} }
func refused(l Link, code LinkError) regStep {
	return regStep{op: "admit", link: l, want: code}
}
func initInfo(lease string, id uint32) regStep {
	return regStep{op: "observe", lease: lease, info: MainInfo{SessionID: id, HasSessionID: true}}
}
func listInfo(lease string, id uint32, list ...ChannelID) regStep {
	return regStep{op: "observe", lease: lease, info: MainInfo{SessionID: id, HasSessionID: true, Channels: list, HasChannels: true}}
}
func closeLease(lease string) regStep          { return regStep{op: "close", lease: lease} }
func wait(d time.Duration) regStep             { return regStep{op: "wait", wait: d} }
func state(token string, s TokenState) regStep { return regStep{op: "state", token: token, state: s} }

func TestRegistry(t *testing.T) {
	const id = 0x5eed
	grace := 3 * time.Second
	for _, tc := range []struct {
		name  string
		steps []regStep
	}{
		{"a session's channels", []regStep{
			state("A", TokenFresh),
			admit("main", mainLink()),
			state("A", TokenLive),
			// Before INIT nobody knows the session id.
			refused(chanLink(id, display0), LinkErrBadConnectionID),
			initInfo("main", id),
			// Before the list: known types within grace.
			admit("display", chanLink(id, display0)),
			listInfo("main", id, display0, cursor0, inputs0),
			wait(time.Hour),
			// Listed channels: any time in the session's life.
			admit("cursor", chanLink(id, cursor0)),
			admit("inputs", chanLink(id, inputs0)),
			// Unlisted after grace.
			refused(chanLink(id, usbredir0), LinkErrChannelNotAvail),
			refused(chanLink(id, display1), LinkErrChannelNotAvail),
			// Wrong or missing connection ids.
			refused(chanLink(id+1, inputs0), LinkErrBadConnectionID),
			refused(chanLink(0, inputs0), LinkErrBadConnectionID),
			closeLease("main"), closeLease("display"), closeLease("cursor"),
			state("A", TokenLive),
			closeLease("inputs"),
			state("A", TokenFresh),
		}},
		{"unlisted channels within grace", []regStep{
			admit("main", mainLink()),
			initInfo("main", id),
			listInfo("main", id, display0, inputs0),
			wait(grace - time.Millisecond),
			admit("usb", chanLink(id, usbredir0)),
			wait(2 * time.Millisecond),
			refused(chanLink(id, webdav0), LinkErrChannelNotAvail),
		}},
		{"no list ever: grace only", []regStep{
			admit("main", mainLink()),
			initInfo("main", id),
			admit("d", chanLink(id, display0)),
			wait(grace),
			admit("i", chanLink(id, inputs0)), // exactly at the end of grace
			wait(time.Millisecond),
			refused(chanLink(id, cursor0), LinkErrChannelNotAvail),
		}},
		{"unknown channel types", []regStep{
			admit("main", mainLink()),
			initInfo("main", id),
			refused(chanLink(id, ChannelID{0, 0}), LinkErrChannelNotAvail),
			refused(chanLink(id, ChannelID{12, 0}), LinkErrChannelNotAvail),
			refused(chanLink(id, ChannelID{255, 0}), LinkErrChannelNotAvail),
		}},
		{"takeover refused while live", []regStep{
			admit("main", mainLink()),
			refused(mainLink(), LinkErrPermissionDenied),
			initInfo("main", id),
			admit("d", chanLink(id, display0)),
			closeLease("main"),
			// The main channel is gone but display lives: still live.
			refused(mainLink(), LinkErrPermissionDenied),
			closeLease("d"),
			// Reusable: a new session, with a new id.
			admit("main2", mainLink()),
			refused(chanLink(id, display0), LinkErrBadConnectionID),
			initInfo("main2", id+7),
			refused(chanLink(id, display0), LinkErrBadConnectionID),
			admit("d2", chanLink(id+7, display0)),
		}},
		{"main with a connection id", []regStep{
			refused(Link{ConnectionID: id, ChannelType: ChannelMain}, LinkErrBadConnectionID),
			state("A", TokenFresh),
			admit("main", mainLink()),
			initInfo("main", id),
			refused(Link{ConnectionID: id, ChannelType: ChannelMain}, LinkErrBadConnectionID),
		}},
		{"secondary without a session", []regStep{
			refused(chanLink(id, display0), LinkErrBadConnectionID),
			refused(chanLink(0, display0), LinkErrBadConnectionID),
			state("A", TokenFresh),
		}},
		{"single-use", []regStep{
			{op: "admit", lease: "main", link: mainLink(), single: true},
			state("A", TokenLive),
			initInfo("main", id),
			listInfo("main", id, display0),
			{op: "admit", lease: "d", link: chanLink(id, display0), single: true},
			closeLease("main"),
			state("A", TokenLive),
			{op: "admit", link: mainLink(), single: true, want: LinkErrPermissionDenied},
			closeLease("d"),
			state("A", TokenSpent),
			{op: "admit", link: mainLink(), single: true, want: LinkErrPermissionDenied},
			// Even presented as reusable, a spent token stays spent.
			{op: "admit", link: mainLink(), want: LinkErrPermissionDenied},
			refused(chanLink(id, display0), LinkErrBadConnectionID),
			state("A", TokenSpent),
		}},
		{"single-use refused at QEMU", []regStep{
			// The main link is admitted, then QEMU refuses it (wrong
			// password): the proxy closes the lease, the token is spent.
			{op: "admit", lease: "main", link: mainLink(), single: true},
			closeLease("main"),
			state("A", TokenSpent),
		}},
		{"tokens are independent", []regStep{
			admit("a", mainLink()),
			{op: "admit", token: "B", lease: "b", link: mainLink(), single: true},
			initInfo("a", id),
			initInfo("b", id), // same session id (another QEMU): no mix-up
			{op: "admit", token: "B", lease: "bd", link: chanLink(id, display0)},
			admit("ad", chanLink(id, display0)),
			closeLease("b"), closeLease("bd"),
			state("A", TokenLive),
			state("B", TokenSpent),
			{op: "admit", token: "C", lease: "c", link: mainLink()},
			state("C", TokenLive),
		}},
		{"a channel is linked once at a time", []regStep{
			admit("main", mainLink()),
			initInfo("main", id),
			listInfo("main", id, display0, display1),
			admit("d0", chanLink(id, display0)),
			refused(chanLink(id, display0), LinkErrPermissionDenied),
			admit("d1", chanLink(id, display1)),
			closeLease("d0"),
			admit("d0again", chanLink(id, display0)),
		}},
		{"observe and close quirks", []regStep{
			admit("main", mainLink()),
			initInfo("main", id),
			admit("d", chanLink(id, display0)),
			// Reports on a secondary lease are ignored.
			initInfo("d", id+1),
			admit("i", chanLink(id, inputs0)),
			closeLease("d"), closeLease("d"), // twice: harmless
			state("A", TokenLive),
			closeLease("main"), closeLease("i"),
			state("A", TokenFresh),
			// A report after the session ended changes nothing.
			initInfo("main", id),
			refused(chanLink(id, display0), LinkErrBadConnectionID),
		}},
		{"later reports update the list", []regStep{
			admit("main", mainLink()),
			initInfo("main", id),
			listInfo("main", id, display0),
			wait(time.Hour),
			refused(chanLink(id, inputs0), LinkErrChannelNotAvail),
			{op: "observe", lease: "main", info: MainInfo{Channels: []ChannelID{inputs0}, HasChannels: true}},
			admit("i", chanLink(id, inputs0)),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := &fakeClock{t: time.Unix(1700000000, 0)}
			r := &Registry{Grace: grace, Now: clock.now}
			leases := map[string]*Lease{}
			for i, s := range tc.steps {
				token := s.token
				if token == "" {
					token = "A"
				}
				where := fmt.Sprintf("step %d (%s %s %v)", i, s.op, s.lease, s.link.Channel())
				switch s.op {
				case "admit":
					l, err := r.Admit(token, s.single, &s.link)
					if got := Code(err); got != s.want {
						t.Fatalf("%s: got %v (%v), want %v", where, got, err, s.want)
					}
					if err != nil {
						var rerr *RefusedError
						if !errors.As(err, &rerr) || l != nil {
							t.Fatalf("%s: %T %v", where, err, l)
						}
						if msg := err.Error(); strings.Contains(msg, token) && len(token) > 1 || !strings.HasPrefix(msg, "spice: refused") {
							t.Fatalf("%s: message %q", where, msg)
						}
						continue
					}
					if l.Channel() != s.link.Channel() || l.Session() != r.Fingerprint(token) {
						t.Fatalf("%s: lease %v %s", where, l.Channel(), l.Session())
					}
					if s.lease != "" {
						leases[s.lease] = l
					}
				case "observe":
					leases[s.lease].Observe(s.info)
				case "close":
					leases[s.lease].Close()
				case "wait":
					clock.advance(s.wait)
				case "state":
					if got := r.State(token); got != s.state {
						t.Fatalf("%s: token %s is %v, want %v", where, token, got, s.state)
					}
				default:
					t.Fatalf("bad op %q", s.op)
				}
			}
		})
	}
}

func TestRegistryDefaults(t *testing.T) {
	clock := &fakeClock{t: time.Unix(0, 0)}
	r := &Registry{Now: clock.now} // Grace 0: DefaultGrace
	m, err := r.Admit("t", false, &Link{ChannelType: ChannelMain})
	if err != nil {
		t.Fatal(err)
	}
	m.Observe(MainInfo{SessionID: 1, HasSessionID: true})
	clock.advance(DefaultGrace)
	if _, err := r.Admit("t", false, &Link{ConnectionID: 1, ChannelType: ChannelDisplay}); err != nil {
		t.Errorf("at DefaultGrace: %v", err)
	}
	clock.advance(time.Millisecond)
	if _, err := r.Admit("t", false, &Link{ConnectionID: 1, ChannelType: ChannelInputs}); Code(err) != LinkErrChannelNotAvail {
		t.Errorf("after DefaultGrace: %v", err)
	}
	if info := m.Info(); info.SessionID != 1 || info.HasChannels {
		t.Errorf("%+v", info)
	}
	if r.Live() != 1 {
		t.Errorf("%d live", r.Live())
	}

	// The zero Registry works on the real clock.
	var z Registry
	if _, err := z.Admit("t", true, &Link{ChannelType: ChannelMain}); err != nil {
		t.Fatal(err)
	}
}

func TestRegistryFingerprint(t *testing.T) {
	const token = "correct-horse-battery-staple"
	r1, r2 := &Registry{}, &Registry{}
	f1 := r1.Fingerprint(token)
	if f1 != r1.Fingerprint(token) || f1 == r1.Fingerprint(token+"x") {
		t.Error("fingerprints are not stable per token")
	}
	if f1 == r2.Fingerprint(token) {
		t.Error("two registries share a fingerprint key")
	}
	if len(f1) != 12 || strings.Contains(token, f1) {
		t.Errorf("fingerprint %q", f1)
	}
	r1.Admit(token, true, &Link{ChannelType: ChannelMain})
	_, err := r1.Admit(token, true, &Link{ChannelType: ChannelMain})
	if err == nil || strings.Contains(err.Error(), token) || !strings.Contains(err.Error(), f1) {
		t.Errorf("refusal %q: want the fingerprint %s, never the token", err, f1)
	}
}

// TestRegistryConcurrent hammers one token from many goroutines: at any
// moment at most one main channel is admitted, and every lease closes
// (run with -race).
func TestRegistryConcurrent(t *testing.T) {
	r := &Registry{Grace: time.Hour}
	var mains [3]atomic.Int32 // admitted main channels per token
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				k := i % 3
				token := fmt.Sprintf("tok%d", k)
				m, err := r.Admit(token, false, &Link{ChannelType: ChannelMain})
				if err != nil {
					// Another goroutine's session: try a secondary.
					if l, err := r.Admit(token, false, &Link{ConnectionID: uint32(g + 1), ChannelType: ChannelDisplay, ChannelID: uint8(g)}); err == nil {
						l.Close()
					}
					continue
				}
				if n := mains[k].Add(1); n > 1 {
					t.Errorf("%d main channels admitted at once for %s", n, token)
				}
				m.Observe(MainInfo{SessionID: uint32(g + 1), HasSessionID: true, Channels: []ChannelID{{ChannelDisplay, uint8(g)}}, HasChannels: true})
				_ = m.Info()
				mains[k].Add(-1)
				m.Close()
			}
		}()
	}
	wg.Wait()
	if r.Live() != 0 {
		t.Errorf("%d sessions live after every lease closed", r.Live())
	}
}
