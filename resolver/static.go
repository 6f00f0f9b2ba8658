package resolver

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/virtconsole/virtconsole/protocols"
)

// MaxTokenFileSize bounds the static token file that LoadFile and Reload
// read.
const MaxTokenFileSize = 16 << 20

// DefaultWatchInterval is the polling interval Watch uses when given a
// non-positive one.
const DefaultWatchInterval = 2 * time.Second

// Static is the static token resolver (the original proxy's "builtin"
// resolver): a table of tokens loaded from a JSON file mapping each token
// to a Console, or built with NewStatic.
//
// Its tokens are in a TokenTable (lookups in constant time with respect
// to the token), replaced as a whole on reload; a Static is safe for
// concurrent use.
//
// Tokens are reusable by default; SetSingleUse(true) makes them
// single-use (see Consume).
type Static struct {
	path      string
	tokens    TokenTable[staticFile, protocols.Target]
	singleUse atomic.Bool

	// spent holds the SHA-256 of every consumed token (never the token):
	// they stay spent across reloads, even if the file still lists them,
	// and, for a Static with a file, across restarts (SpentPath).
	spentMu sync.RWMutex
	spent   map[[sha256.Size]byte]struct{}

	mu        sync.Mutex // serialises loads; guards the fields below
	attempted fileStamp  // stamp of the last file Watch tried to load
	statErr   string     // last stat error Watch logged, to log it once
	onReload  func()     // called after each table installed by a reload
}

// staticFile is the one group of a Static's table: its file or map.
type staticFile struct{}

// NewStatic returns a Static serving tokens, which map each token to its
// console. It has no file: Reload fails and Watch returns at once.
// Errors identify a bad console by its address, never by its token.
func NewStatic(tokens map[string]Console) (*Static, error) {
	entries, err := buildFromMap(tokens)
	if err != nil {
		return nil, fmt.Errorf("static tokens: %w", err)
	}
	s := &Static{}
	s.tokens.Set(staticFile{}, entries)
	return s, nil
}

// LoadFile reads the static token file at path: a JSON object mapping each
// token to a Console, e.g.
//
//	{"s3cret": {"type":"serial","address":"127.0.0.1:4555","insecure":false}}
//
// Unknown fields are ignored. A malformed file gives a one-line error that
// names the file and what to fix; it never contains a token (bad entries
// are identified by position, line and address).
//
// The tokens consumed under a single-use policy are read from, and
// recorded in, SpentPath(path), so that they stay spent after a restart.
func LoadFile(path string) (*Static, error) {
	s := &Static{path: path}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	spent, err := readSpent(SpentPath(path))
	if err != nil {
		return nil, err
	}
	s.spent = spent
	return s, nil
}

// SpentPath returns the file where a static token file's spent tokens are
// recorded: the token file's path with ".spent" appended. It holds one
// line per consumed token, the hex SHA-256 of the token (never the token
// itself), and is replaced atomically (a temporary file renamed over it)
// on every change. Deleting it, with the proxy stopped, makes every token
// in the token file valid again.
func SpentPath(tokenFile string) string { return tokenFile + ".spent" }

const spentHeader = "# virtconsole: tokens of the token file that opened their one session (SHA-256 of each; delete the file to reuse them)\n"

// readSpent reads a spent-token file; a missing one is an empty set.
func readSpent(path string) (map[[sha256.Size]byte]struct{}, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("spent-token file %s: cannot read it: %v", path, unwrapPath(err))
	}
	spent := map[[sha256.Size]byte]struct{}{}
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		var sum [sha256.Size]byte
		if n, err := hex.Decode(sum[:], []byte(line)); err != nil || n != sha256.Size || len(line) != 2*sha256.Size {
			return nil, fmt.Errorf("spent-token file %s: line %d is not a SHA-256 in hex; fix or delete the file (deleting it makes spent tokens valid again)", path, i+1)
		}
		spent[sum] = struct{}{}
	}
	return spent, nil
}

// writeSpentLocked records the spent set in SpentPath (callers hold
// spentMu): written to a temporary file beside it, synced and renamed
// over it, so that a crash leaves the old set or the new one.
func (s *Static) writeSpentLocked() error {
	if s.path == "" {
		return nil // NewStatic: in memory only
	}
	path := SpentPath(s.path)
	lines := make([]string, 0, len(s.spent))
	for sum := range s.spent {
		lines = append(lines, hex.EncodeToString(sum[:]))
	}
	sort.Strings(lines)
	data := spentHeader + strings.Join(lines, "\n")
	if len(lines) > 0 {
		data += "\n"
	}
	if err := WriteFileAtomic(path, []byte(data)); err != nil {
		return fmt.Errorf("spent-token file %s: cannot write it: %v: %w", path, unwrapPath(err), ErrUnavailable)
	}
	return nil
}

// WriteFileAtomic writes data to path, mode 0600, through a temporary
// file beside it, synced and renamed over it: a crash leaves the old
// file or the new one, never part of one.
func WriteFileAtomic(path string, data []byte) error {
	return WriteFileAtomicMode(path, data, 0o600)
}

// WriteFileAtomicMode is WriteFileAtomic with the file's mode perm. A path
// that exists and is not a regular file (/dev/null, /dev/stdout, a FIFO)
// is written in place: renaming over it would replace the device, and
// "atomic" means nothing there. The directory is synced after the rename
// where the filesystem allows, so that the rename itself is durable.
func WriteFileAtomicMode(path string, data []byte, perm os.FileMode) error {
	if fi, err := os.Stat(path); err == nil && !fi.Mode().IsRegular() {
		if fi.IsDir() {
			return &os.PathError{Op: "write", Path: path, Err: errors.New("is a directory")}
		}
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		_, err = f.Write(data)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// OnReload sets f to be called after each successful Reload, and each
// reload by Watch, once the new table is in use (nil: none). f runs with
// loads serialised: it must not call Reload. It may call Lists, e.g. to
// end the sessions of tokens no longer in the file.
func (s *Static) OnReload(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onReload = f
}

// Lists reports whether token is in the current table, spent or not: a
// token that Lists no longer has was revoked by the file.
func (s *Static) Lists(token string) bool {
	_, ok := s.tokens.Lookup(token)
	return ok
}

// Path returns the file s was loaded from ("" for NewStatic).
func (s *Static) Path() string { return s.path }

// Len returns the number of tokens in the current table.
func (s *Static) Len() int { return s.tokens.Len() }

// Resolve returns the console token opens, or an error wrapping
// ErrNotFound.
func (s *Static) Resolve(ctx context.Context, token string) (protocols.Target, error) {
	if err := ctx.Err(); err != nil {
		return protocols.Target{}, err
	}
	t, ok := s.tokens.Lookup(token)
	if !ok || s.isSpent(sha256.Sum256([]byte(token))) {
		return protocols.Target{}, ErrNotFound
	}
	return t, nil
}

// ResolveID returns the console of the token whose TokenID is id (a
// share link names a console so, never by its token), or an error
// wrapping ErrNotFound. A grant does not spend a single-use token.
func (s *Static) ResolveID(ctx context.Context, id string) (protocols.Target, error) {
	if err := ctx.Err(); err != nil {
		return protocols.Target{}, err
	}
	t, ok := s.tokens.LookupID(id)
	if !ok {
		return protocols.Target{}, ErrNotFound
	}
	return t, nil
}

func (s *Static) isSpent(sum [sha256.Size]byte) bool {
	s.spentMu.RLock()
	defer s.spentMu.RUnlock()
	_, spent := s.spent[sum]
	return spent
}

var _ SingleUser = (*Static)(nil)

// SetSingleUse sets the token policy that SingleUse reports: reusable
// (false, the default) or single-use (true). Tokens consumed before stay
// spent either way.
func (s *Static) SetSingleUse(single bool) { s.singleUse.Store(single) }

// SingleUse implements SingleUser: whether tokens are single-use under
// the policy set with SetSingleUse.
func (s *Static) SingleUse() bool { return s.singleUse.Load() }

// Consume implements SingleUser: it marks token spent, whatever the
// policy (SingleUse tells the proxy whether to call it), so that Resolve
// no longer finds it. Only the token's SHA-256 is kept: a spent token
// stays spent across Reload and Watch, even while the file still lists
// it, and for a Static loaded from a file across restarts too (it is
// recorded in SpentPath before Consume returns; if it cannot be, Consume
// fails with an error wrapping ErrUnavailable and the token stays valid).
// Concurrent calls with one token serialise: exactly one returns nil, the
// others an error wrapping ErrNotFound, as does a token that does not
// resolve.
func (s *Static) Consume(ctx context.Context, token string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	sum := sha256.Sum256([]byte(token))
	s.spentMu.Lock()
	defer s.spentMu.Unlock()
	if _, ok := s.tokens.Lookup(token); !ok {
		return ErrNotFound
	}
	if _, spent := s.spent[sum]; spent {
		return ErrNotFound
	}
	if s.spent == nil {
		s.spent = map[[sha256.Size]byte]struct{}{}
	}
	s.spent[sum] = struct{}{}
	if err := s.writeSpentLocked(); err != nil {
		delete(s.spent, sum)
		return err
	}
	return nil
}

var _ Refunder = (*Static)(nil)

// Refund implements Refunder: it unmarks token spent, so that a token
// whose session could not start can open one, and records that in
// SpentPath. If that cannot be written the token stays spent.
func (s *Static) Refund(ctx context.Context, token string) error {
	sum := sha256.Sum256([]byte(token))
	s.spentMu.Lock()
	defer s.spentMu.Unlock()
	if _, ok := s.spent[sum]; !ok {
		return nil
	}
	delete(s.spent, sum)
	if err := s.writeSpentLocked(); err != nil {
		s.spent[sum] = struct{}{}
		return err
	}
	return nil
}

// Reload reads the file again and, if it is well-formed, replaces the
// table. On error the current table stays in use. The error is one line
// naming the file and never contains a token.
func (s *Static) Reload() error {
	if s.path == "" {
		return errors.New("static tokens: no file to reload")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := statFile(s.path)
	if err != nil {
		return s.fileErr(err)
	}
	s.attempted = st
	return s.loadLocked()
}

// loadLocked reads and parses the file and installs the table. Callers
// record the file's stamp before calling it, so that a change made while
// reading is seen by the next poll.
func (s *Static) loadLocked() error {
	data, err := readBounded(s.path)
	if err != nil {
		return s.fileErr(err)
	}
	entries, err := parseTokenFile(data)
	if err != nil {
		return fmt.Errorf("token file %s: %w", s.path, err)
	}
	s.tokens.Set(staticFile{}, entries)
	if s.onReload != nil {
		s.onReload()
	}
	return nil
}

func (s *Static) fileErr(err error) error {
	return fmt.Errorf("token file %s: cannot read it: %v", s.path, unwrapPath(err))
}

// Watch polls the file every interval (DefaultWatchInterval if
// interval <= 0) until ctx is done, and reloads it when its modification
// time, size or inode change. A successful reload logs the number of
// tokens; a failed one logs why and keeps the last good table. Watch
// blocks: run it in its own goroutine. It returns at once for a Static
// without a file.
func (s *Static) Watch(ctx context.Context, interval time.Duration, logger *slog.Logger) {
	if s.path == "" {
		return
	}
	if interval <= 0 {
		interval = DefaultWatchInterval
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		s.poll(logger)
	}
}

func (s *Static) poll(logger *slog.Logger) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := statFile(s.path)
	if err != nil {
		msg := s.fileErr(err).Error()
		if msg != s.statErr {
			s.statErr = msg
			logger.Warn("token file unreadable, keeping the last good tokens",
				"path", s.path, "error", msg, "tokens", s.Len())
		}
		return
	}
	s.statErr = ""
	if st == s.attempted {
		return
	}
	s.attempted = st
	if err := s.loadLocked(); err != nil {
		logger.Warn("token file not reloaded, keeping the last good tokens",
			"path", s.path, "error", err.Error(), "tokens", s.Len())
		return
	}
	logger.Info("token file reloaded", "path", s.path, "tokens", s.Len())
}

// ExposedFileWarning returns a one-line warning when the token file at
// path (a static token file or a client's token file) can be read by its
// group or by others, e.g. "token file ./mytoken is readable by others
// (mode 0644); chmod 600 it", and "" otherwise: when only its owner can
// read it, when it cannot be stat'ed (reading it will say why), and on
// systems without Unix permission bits. It never reads the file.
func ExposedFileWarning(path string) string { return ExposedWarning("token file", path) }

// ExposedWarning is ExposedFileWarning for any file of secrets, which the
// warning calls what (e.g. "config file").
func ExposedWarning(what, path string) string {
	fi, err := os.Stat(path)
	if err != nil || !fi.Mode().IsRegular() {
		return ""
	}
	var who string
	switch r := readableByOthers(fi); {
	case r&0o004 != 0:
		who = "others"
	case r&0o040 != 0:
		who = "its group"
	default:
		return ""
	}
	return fmt.Sprintf("%s %s is readable by %s (mode %04o); chmod 600 it", what, path, who, fi.Mode().Perm())
}

// fileStamp is what Watch compares to notice a changed file.
type fileStamp struct {
	mtime time.Time
	size  int64
	inode uint64
}

func statFile(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	if !fi.Mode().IsRegular() {
		return fileStamp{}, &fs.PathError{Op: "stat", Path: path, Err: errors.New("not a regular file")}
	}
	return fileStamp{mtime: fi.ModTime(), size: fi.Size(), inode: inodeOf(fi)}, nil
}

func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxTokenFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxTokenFileSize {
		return nil, fmt.Errorf("larger than %d MiB", MaxTokenFileSize>>20)
	}
	return data, nil
}

const tokenFileExample = `{"<token>": {"type":"vnc","address":"127.0.0.1:5901","insecure":false}}`

// parseTokenFile parses the static token file format. Its errors say
// where the problem is and never contain a token.
func parseTokenFile(data []byte) ([]Token[protocols.Target], error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil, fmt.Errorf("file is empty; want a JSON object mapping each token to a console, e.g. %s", tokenFileExample)
	}
	// Validate the syntax first: this gives an exact offset.
	if err := json.Unmarshal(data, new(json.RawMessage)); err != nil {
		return nil, syntaxErr(data, err)
	}
	if trimmed[0] != '{' {
		return nil, fmt.Errorf("the file holds %s; want a JSON object mapping each token to a console, e.g. %s",
			jsonKind(trimmed), tokenFileExample)
	}
	// Every token is known before any value is echoed in an error.
	raws, err := rawEntries(data)
	if err != nil {
		return nil, err
	}
	tokens := make([]string, len(raws))
	for i, re := range raws {
		tokens[i] = re.token
	}
	entries := make([]Token[protocols.Target], 0, len(raws))
	seen := make(map[[sha256.Size]byte]int, len(raws))
	for i, re := range raws {
		c, where, err := re.console(i+1, tokens)
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256([]byte(re.token))
		if prev, dup := seen[sum]; dup {
			return nil, fmt.Errorf("%s has the same token as entry %d (line %d); give each console its own token",
				where, prev+1, raws[prev].line)
		}
		seen[sum] = i
		t, err := c.Target()
		if err != nil {
			return nil, fmt.Errorf("%s: %s", where, targetErr(c, err, tokens))
		}
		entries = append(entries, Token[protocols.Target]{Token: re.token, Value: t})
	}
	return entries, nil
}

// rawEntry is one entry of the token file as written.
type rawEntry struct {
	token string
	line  int
	raw   json.RawMessage
}

// rawEntries reads the entries of the token file's object in file order.
func rawEntries(data []byte) ([]rawEntry, error) {
	var raws []rawEntry
	dec := json.NewDecoder(bytes.NewReader(data))
	if _, err := dec.Token(); err != nil { // '{'
		return nil, syntaxErr(data, err)
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, syntaxErr(data, err)
		}
		token, _ := tok.(string)
		line := lineAt(data, dec.InputOffset())
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, syntaxErr(data, err)
		}
		raws = append(raws, rawEntry{token, line, bytes.TrimSpace(raw)})
	}
	if _, err := dec.Token(); err != nil { // '}'
		return nil, syntaxErr(data, err)
	}
	return raws, nil
}

// where names entry n in errors: by position and line, and by address
// unless that would show a token.
func (re rawEntry) where(n int, address string, tokens []string) string {
	if addr := withhold(address, tokens); addr != "" {
		return fmt.Sprintf("entry %d (line %d, address %q)", n, re.line, addr)
	}
	return fmt.Sprintf("entry %d (line %d)", n, re.line)
}

// console decodes entry n, and names it for errors.
func (re rawEntry) console(n int, tokens []string) (Console, string, error) {
	var c Console
	where := re.where(n, "", nil)
	if len(re.raw) == 0 || re.raw[0] != '{' {
		return c, where, fmt.Errorf("%s: the value is %s; want a console object, e.g. %s",
			where, jsonKind(re.raw), `{"type":"vnc","address":"127.0.0.1:5901"}`)
	}
	if err := json.Unmarshal(re.raw, &c); err != nil {
		return c, where, fmt.Errorf("%s: %s", where, fieldErr(err))
	}
	where = re.where(n, c.Address, tokens)
	if re.token == "" {
		return c, where, fmt.Errorf("%s: empty token; use a long random string as this entry's key", where)
	}
	return c, where, nil
}

func buildFromMap(tokens map[string]Console) ([]Token[protocols.Target], error) {
	keys := make([]string, 0, len(tokens))
	for k := range tokens {
		keys = append(keys, k)
	}
	// A deterministic order, so the same bad input gives the same error.
	sort.Slice(keys, func(i, j int) bool {
		a, b := tokens[keys[i]], tokens[keys[j]]
		if a.Address != b.Address {
			return a.Address < b.Address
		}
		return a.Type < b.Type
	})
	entries := make([]Token[protocols.Target], 0, len(tokens))
	for _, token := range keys {
		c := tokens[token]
		where := "a console"
		if addr := withhold(c.Address, keys); addr != "" {
			where = fmt.Sprintf("the console at address %q", addr)
		}
		if token == "" {
			return nil, fmt.Errorf("%s has an empty token", where)
		}
		t, err := c.Target()
		if err != nil {
			return nil, fmt.Errorf("%s: %s", where, targetErr(c, err, keys))
		}
		entries = append(entries, Token[protocols.Target]{Token: token, Value: t})
	}
	return entries, nil
}

// withhold returns v, or "" if v contains one of tokens (so that an error
// message echoing v cannot disclose a token).
func withhold(v string, tokens []string) string {
	if containsToken(v, tokens) {
		return ""
	}
	return v
}

func containsToken(v string, tokens []string) bool {
	for _, t := range tokens {
		if t != "" && strings.Contains(v, t) {
			return true
		}
	}
	return false
}

// targetErr describes a Console.Target error, withholding it if the
// values it echoes contain a token.
func targetErr(c Console, err error, tokens []string) string {
	if containsToken(c.Role, tokens) {
		return "unknown role (value withheld: it contains a token); want control or view"
	}
	if containsToken(c.Record, tokens) {
		return "unknown record (value withheld: it contains a token); want off, on or required"
	}
	if containsToken(c.Type, tokens) || containsToken(c.Address, tokens) {
		if _, kerr := protocols.ParseKind(c.Type); kerr != nil {
			return "unknown console type (value withheld: it contains a token); want vnc, spice, serial or console"
		}
		return "bad address (value withheld: it contains a token); want host:port"
	}
	// The entry is already named by its address: do not repeat it.
	if msg, ok := strings.CutPrefix(err.Error(), fmt.Sprintf("address %q: ", c.Address)); ok {
		return "bad address: " + msg
	}
	return err.Error()
}

// fieldErr describes a json.Unmarshal error on a Console without echoing
// the offending value.
func fieldErr(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		want := "a " + te.Type.String()
		switch te.Type.Kind() {
		case reflect.Bool:
			want = "true or false"
		case reflect.String:
			want = "a string"
		}
		field := te.Field
		if field == "" {
			field = "console"
		}
		return fmt.Sprintf("field %q must be %s", field, want)
	}
	return "malformed console object"
}

// syntaxErr turns a JSON syntax error into a message with a line and
// column. Details that could quote a character of a string (and so of a
// token) are dropped.
func syntaxErr(data []byte, err error) error {
	var se *json.SyntaxError
	if !errors.As(err, &se) {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return errors.New("invalid JSON: unexpected end of file")
		}
		return errors.New("invalid JSON")
	}
	line, col := lineCol(data, se.Offset)
	what := se.Error()
	switch {
	case strings.Contains(what, "in string literal"),
		strings.Contains(what, "in string escape code"),
		strings.Contains(what, "hexadecimal character escape"):
		// The character is inside a string, perhaps a token: leave it out.
		what = "invalid character in a string (control characters and bad escapes are not allowed)"
	case strings.Contains(what, "looking for beginning of object key string"):
		what += " (a trailing comma?)"
	}
	return fmt.Errorf("invalid JSON at line %d, column %d: %s", line, col, what)
}

func lineAt(data []byte, off int64) int {
	l, _ := lineCol(data, off)
	return l
}

func lineCol(data []byte, off int64) (line, col int) {
	if off < 0 {
		off = 0
	}
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	before := data[:off]
	line = bytes.Count(before, []byte{'\n'}) + 1
	col = int(off) - (bytes.LastIndexByte(before, '\n') + 1)
	if col < 1 {
		col = 1
	}
	return line, col
}

func jsonKind(v []byte) string {
	if len(v) == 0 {
		return "nothing"
	}
	switch v[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	default:
		return "a number"
	}
}
