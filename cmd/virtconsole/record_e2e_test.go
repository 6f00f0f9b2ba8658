package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/protocols/qemutest"
	"github.com/virtconsole/virtconsole/resolver"
)

// recordToken is long and unique so that finding it in a recording's
// bytes cannot be chance.
const recordToken = "record-token-4d1c9a7e5b3f2086d1e4"

// asciinemaCat runs Debian's asciinema cat (the player recordings must
// play in) on a recording and returns its output. asciinema cat opens
// /dev/tty (to restore it on Ctrl-C), so it runs in a session of its own
// with a pseudo-terminal as its controlling terminal.
func asciinemaCat(t *testing.T, cast string) (string, error) {
	t.Helper()
	player, err := exec.LookPath("asciinema")
	if err != nil {
		t.Fatal("asciinema not found: install Debian's asciinema package (.ci/install-deps does)")
	}
	_, slave := openPTY(t)
	cmd := exec.Command(player, "cat", cast)
	cmd.Stdin = slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// recordingKey makes a signing key with "recordings keygen" and returns
// the private and public key files.
func recordingKey(t *testing.T) (key, pub string) {
	t.Helper()
	key = filepath.Join(t.TempDir(), "record-key.pem")
	r := run(t, nil, "recordings", "keygen", "-o", key)
	if r.code != 0 {
		t.Fatalf("recordings keygen: exit %d: %s", r.code, r.stderr)
	}
	if fi, err := os.Stat(key); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the private key's mode is not 0600: %v %v", fi, err)
	}
	return key, strings.TrimSuffix(key, ".pem") + ".pub.pem"
}

// castEvents reads a recording's events of code, in order.
func castEvents(t *testing.T, path, code string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for i, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")[1:] {
		var ev [3]any
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("event line %d %q: %v", i+1, line, err)
		}
		if ev[1] == code {
			out = append(out, ev[2].(string))
		}
	}
	return out
}

// waitRecording waits for dir's one recording (with its manifest when
// manifest is set) and returns its path.
func waitRecording(t *testing.T, dir string, manifest bool) string {
	t.Helper()
	return waitRecordingExt(t, dir, ".cast", manifest)
}

// waitRecordingExt is waitRecording for a recording named *ext.
func waitRecordingExt(t *testing.T, dir, ext string, manifest bool) string {
	t.Helper()
	var path string
	waitFor(t, 30*time.Second, "the recording", func() bool {
		m, _ := filepath.Glob(filepath.Join(dir, "*"+ext))
		if len(m) != 1 {
			return false
		}
		path = m[0]
		_, err := os.Stat(path + ".manifest.json")
		return !manifest || err == nil
	})
	return path
}

// noToken fails if any file in dir holds the token.
func noToken(t *testing.T, dir string) {
	t.Helper()
	noSecret(t, dir, recordToken)
}

// noSecret fails if any file in dir holds secret.
func noSecret(t *testing.T, dir, secret string) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), secret) {
			t.Fatalf("%s holds %q", f, secret)
		}
	}
}

// recordingProxy starts the tiny Linux guest on a TLS chardev that
// requires client certificates and "server proxy" with TLS on both legs
// recording to a new directory with extra flags; it returns the proxy,
// the directory and the serial client's arguments.
func recordingProxy(t *testing.T, record string, extra ...string) (p *daemon, dir string, client []string) {
	t.Helper()
	pkiDir, addr := recordingGuest(t)
	return recordingProxyTo(t, pkiDir, addr, record, extra...)
}

// recordingGuest starts the tiny Linux guest on a TLS chardev that
// requires client certificates of a new PKI; it returns the PKI's
// directory and the chardev's address.
func recordingGuest(t *testing.T) (pkiDir, addr string) {
	t.Helper()
	pkiDir = pki(t)
	_, addr = qemutest.StartSerial(t, qemutest.SerialOptions{TLSDir: pkiDir, VerifyPeer: true, Guest: true})
	return pkiDir, addr
}

// recordingProxyTo is recordingProxy toward the guest of recordingGuest.
func recordingProxyTo(t *testing.T, pkiDir, addr, record string, extra ...string) (p *daemon, dir string, client []string) {
	t.Helper()
	tokens := writeTokens(t, map[string]resolver.Console{recordToken: {Type: "serial", Address: addr, Record: record}})
	dir = filepath.Join(t.TempDir(), "recordings")
	p = startDaemon(t, append([]string{"server", "proxy", "--listen", "127.0.0.1:0", "--tls-dir", pkiDir,
		"--connect-tls-dir", pkiDir, "--tokens", tokens, "--record-dir", dir}, extra...)...)
	return p, dir, []string{"--proxy", "wss://" + p.addr, "--ca-file", filepath.Join(pkiDir, "ca-cert.pem"),
		"--token-file", writeToken(t, recordToken)}
}

// TestRecordSerial: a serial session through "server proxy" (TLS both
// legs, static token file) with --record-dir and --record-key leaves an
// asciicast that Debian's asciinema plays with the guest's answer 42 to
// echo $((6*7)); the typed line is an "i" event only with
// --record-input; "recordings verify" passes, and fails with exit 10 and
// one line once a byte is flipped; neither file holds the token.
func TestRecordSerial(t *testing.T) {
	qemutest.Require(t)
	// One guest for both sessions (one after the other, each through a
	// proxy of its own): it boots once.
	pkiDir, addr := recordingGuest(t)
	for _, input := range []bool{false, true} {
		name := "output-only"
		if input {
			name = "record-input"
		}
		t.Run(name, func(t *testing.T) {
			key, pub := recordingKey(t)
			flags := []string{"--record-key", key}
			if input {
				flags = append(flags, "--record-input")
			}
			p, dir, client := recordingProxyTo(t, pkiDir, addr, "", flags...)
			askGuest(t, "\n", client...)
			cast := waitRecording(t, dir, true)

			out, err := asciinemaCat(t, cast)
			if err != nil || !strings.Contains(out, "\n42\r\n") {
				t.Fatalf("asciinema cat: %v; no 42 in its output:\n%s", err, out)
			}
			typed := strings.Join(castEvents(t, cast, "i"), "")
			if input != strings.Contains(typed, "echo $((6*7))") {
				t.Fatalf("with --record-input %v, the input events are %q", input, typed)
			}
			if !strings.Contains(p.log.String(), `msg="session end"`) || !strings.Contains(p.log.String(), "recording="+cast) {
				t.Fatalf("the proxy's log does not name the recording:\n%s", p.log.String())
			}

			r := run(t, nil, "recordings", "verify", cast, "--key", pub)
			if r.code != 0 || !strings.Contains(r.stdout, "verified") {
				t.Fatalf("verify of the intact recording: exit %d, %q %q", r.code, r.stdout, r.stderr)
			}
			r = run(t, nil, "recordings", "list", dir, "--key", pub, "--json")
			var list []map[string]any
			if r.code != 0 || json.Unmarshal([]byte(r.stdout), &list) != nil || len(list) != 1 || list[0]["status"] != "verified" ||
				list[0]["kind"] != "serial" {
				t.Fatalf("recordings list --json: exit %d, %q %q", r.code, r.stdout, r.stderr)
			}
			r = run(t, nil, "recordings", "play", cast, "--speed", "1000")
			if r.code != 0 || !strings.Contains(r.stdout, "\n42\r\n") {
				t.Fatalf("recordings play: exit %d, no 42 in %q; stderr %q", r.code, r.stdout, r.stderr)
			}
			noToken(t, dir)

			b, err := os.ReadFile(cast)
			if err != nil {
				t.Fatal(err)
			}
			i := strings.Index(string(b), "42")
			b[i] ^= 1 // "42" becomes "52"
			if err := os.WriteFile(cast, b, 0o600); err != nil {
				t.Fatal(err)
			}
			r = run(t, nil, "recordings", "verify", cast, "--key", pub)
			if r.code != cmdutil.ExitInvalid {
				t.Fatalf("verify of a changed recording: exit %d, want %d; %q %q", r.code, cmdutil.ExitInvalid, r.stdout, r.stderr)
			}
			checkOneLine(t, r.stderr, "differs from its signed manifest")
		})
	}
}

// TestRecordKilledProxy: a recording cut by kill -9 of the proxy has no
// manifest: verify says incomplete (exit 9), and asciinema still plays
// it up to the cut.
func TestRecordKilledProxy(t *testing.T) {
	qemutest.Require(t)
	key, pub := recordingKey(t)
	p, dir, client := recordingProxy(t, "", "--record-key", key)
	c := startSerial(t, client...)
	typeUntil(t, c, "echo $((6*7))\n", "42")
	cast := waitRecording(t, dir, false)
	waitFor(t, 10*time.Second, "the answer in the recording (flushed within a second)", func() bool {
		b, _ := os.ReadFile(cast)
		return strings.Contains(string(b), `42\r\n`)
	})
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	c.wait(t, 30*time.Second)

	r := run(t, nil, "recordings", "verify", cast, "--key", pub)
	if r.code != cmdutil.ExitIncomplete {
		t.Fatalf("verify of a cut recording: exit %d, want %d; %q %q", r.code, cmdutil.ExitIncomplete, r.stdout, r.stderr)
	}
	checkOneLine(t, r.stderr, "incomplete")
	r = run(t, nil, "recordings", "list", dir)
	if r.code != 0 || !strings.Contains(r.stdout, filepath.Base(cast)) || !strings.Contains(r.stdout, " incomplete") {
		t.Fatalf("recordings list: exit %d, %q %q; want the recording, incomplete", r.code, r.stdout, r.stderr)
	}
	out, err := asciinemaCat(t, cast)
	if err != nil || !strings.Contains(out, "\n42\r\n") {
		t.Fatalf("asciinema cat of the cut recording: %v; no 42 in:\n%s", err, out)
	}
	noToken(t, dir)
}

// TestRecordPolicy: with the recording directory gone, a console whose
// token file entry says "record": "required" is refused with 503 and a
// one-line reason the client prints; one that says "on" opens, and the
// proxy's log and audit log say it is not recorded.
func TestRecordPolicy(t *testing.T) {
	qemutest.Require(t)
	pkiDir := pki(t)
	_, addr := qemutest.StartSerial(t, qemutest.SerialOptions{TLSDir: pkiDir, VerifyPeer: true, Monitor: true})
	tokens := writeTokens(t, map[string]resolver.Console{
		recordToken + "-required": {Type: "console", Address: addr, Record: "required"},
		recordToken + "-on":       {Type: "console", Address: addr, Record: "on"},
	})
	dir := filepath.Join(t.TempDir(), "recordings")
	audit := filepath.Join(t.TempDir(), "audit.log")
	p := startDaemon(t, "server", "proxy", "--listen", "127.0.0.1:0", "--tls-dir", pkiDir, "--connect-tls-dir", pkiDir,
		"--tokens", tokens, "--record-dir", dir, "--record", "none", "--audit-log", audit)
	if err := os.RemoveAll(dir); err != nil { // the disk went away
		t.Fatal(err)
	}
	client := []string{"--proxy", "wss://" + p.addr, "--ca-file", filepath.Join(pkiDir, "ca-cert.pem")}

	r := run(t, nil, append([]string{"serial", "--token-file", writeToken(t, recordToken+"-required")}, client...)...)
	if r.code == 0 || !strings.Contains(r.stderr, "503") {
		t.Fatalf("a required recording that cannot be written: exit %d, stderr %q; want a 503 refusal", r.code, r.stderr)
	}
	checkOneLine(t, r.stderr, "must be recorded and its recording cannot be written")

	c := startSerial(t, append([]string{"--token-file", writeToken(t, recordToken+"-on")}, client...)...)
	waitFor(t, 30*time.Second, "the monitor prompt", func() bool { return strings.Contains(c.out.String(), "(qemu)") })
	c.stdin.Close()
	if code := c.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("the unrecorded session: exit %d; stderr %q", code, c.errb.String())
	}
	waitFor(t, 10*time.Second, "the session end", func() bool { return strings.Contains(p.log.String(), "session end") })
	if !strings.Contains(p.log.String(), `msg="session not recorded"`) {
		t.Fatalf("no warning in the proxy's log:\n%s", p.log.String())
	}
	var refused, unrecorded bool
	for _, e := range readAudit(t, audit) {
		switch {
		case e["event"] == "refusal" && e["status"] == 503.0 && strings.Contains(str(e["reason"]), "must be recorded"):
			refused = true
		case e["event"] == "session_start" && strings.Contains(str(e["not_recorded"]), "cannot create the recording"):
			unrecorded = true
		}
	}
	if !refused || !unrecorded {
		t.Fatalf("audit log: refusal with 503 %v, session_start with not_recorded %v", refused, unrecorded)
	}
	if strings.Contains(p.log.String(), recordToken) {
		t.Fatal("the proxy logged the token")
	}
}

// TestREADMERecording runs the README's "Recording" block: keygen, the
// recording proxy (in front of the tiny guest), a session, then list,
// verify, play and asciinema cat of its recording. (Its second block,
// the VNC exports, TestRecordVNC runs on its VNC recording.)
func TestREADMERecording(t *testing.T) {
	qemutest.Require(t)
	lines := readmeSubsection(t, "Recording")
	if len(lines) != 8 {
		t.Fatalf("README's Recording blocks have %d commands, want keygen, the proxy, list, verify, play, asciinema cat and two VNC exports (TestRecordVNC runs those):\n%s", len(lines), strings.Join(lines, "\n"))
	}
	pkiDir := pki(t)
	_, addr := qemutest.StartSerial(t, qemutest.SerialOptions{TLSDir: pkiDir, VerifyPeer: true, Guest: true})
	tokens := writeTokens(t, map[string]resolver.Console{recordToken: {Type: "serial", Address: addr}})
	work := t.TempDir()
	var cast string
	args := func(line string) []string {
		line = strings.ReplaceAll(line, "\\\n", " ")
		line = strings.NewReplacer("127.0.0.1:6443", "127.0.0.1:0", "./pki", pkiDir, "tokens.json", tokens,
			"./recordings/20261201T100000Z-serial-3f46e0a823f092c8.cast", cast, "./recordings", filepath.Join(work, "recordings"),
			"record-key.pem", filepath.Join(work, "record-key.pem"), "record-key.pub.pem", filepath.Join(work, "record-key.pub.pem")).Replace(line)
		return strings.Fields(line)
	}
	virtconsole := func(line string) []string {
		f := args(line)
		if f[0] != "virtconsole" {
			t.Fatalf("README line %q does not run virtconsole", line)
		}
		return f[1:]
	}
	if r := run(t, nil, virtconsole(lines[0])...); r.code != 0 {
		t.Fatalf("%s: exit %d: %s", lines[0], r.code, r.stderr)
	}
	p := startDaemon(t, virtconsole(lines[1])...)
	askGuest(t, "\n", "--proxy", "wss://"+p.addr, "--ca-file", filepath.Join(pkiDir, "ca-cert.pem"), "--token-file", writeToken(t, recordToken))
	cast = waitRecording(t, filepath.Join(work, "recordings"), true)

	want := []string{"signed", "verified", "\n42\r\n"} // list, verify, play
	for i, line := range lines[2:5] {
		r := run(t, nil, virtconsole(line)...)
		if r.code != 0 || !strings.Contains(r.stdout, want[i]) {
			t.Fatalf("%s: exit %d, no %q in %q; stderr %q", line, r.code, want[i], r.stdout, r.stderr)
		}
	}
	if f := args(lines[5]); f[0] != "asciinema" || f[1] != "cat" {
		t.Fatalf("README line %q is not asciinema cat", lines[5])
	}
	if out, err := asciinemaCat(t, args(lines[5])[2]); err != nil || !strings.Contains(out, "\n42\r\n") {
		t.Fatalf("asciinema cat: %v; no 42 in:\n%s", err, out)
	}
}
