package spice

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// readSeeds returns the inputs of the recorded corpus files of a fuzz
// target (testdata/fuzz/<target>/qemu-*), by file name.
func readSeeds(t *testing.T, target string) map[string][]byte {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "fuzz", target, "qemu-*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no recorded seeds for %s (run the QEMU tests with -update-corpus): %v", target, err)
	}
	seeds := make(map[string][]byte)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(string(b), "\n")
		if len(lines) < 2 || lines[0] != "go test fuzz v1" {
			t.Fatalf("%s: not a corpus file", f)
		}
		s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		seeds[filepath.Base(f)] = []byte(s)
	}
	return seeds
}

// TestParseRecordedLinks parses the link messages the QEMU tests sent
// (testdata/fuzz/FuzzReadLink/qemu-*), as QEMU accepted them.
func TestParseRecordedLinks(t *testing.T) {
	for name, b := range readSeeds(t, "FuzzReadLink") {
		l, err := ParseLink(b)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if l.ChannelType != ChannelMain || l.ConnectionID != 0 || len(l.CommonCaps) != 1 {
			t.Errorf("%s: %+v", name, l)
		}
		if !bytes.Equal(l.Marshal(), b) {
			t.Errorf("%s: Marshal does not give back the bytes sent", name)
		}
		l2, raw, err := ReadLink(context.Background(), newMemConn(b))
		if err != nil || !bytes.Equal(raw, b) || !reflect.DeepEqual(l, l2) {
			t.Errorf("%s: ReadLink: %+v %v", name, l2, err)
		}
	}
}

// TestParseRecordedReplies parses QEMU 7.2's link replies and results
// (testdata/fuzz/FuzzLinkReply/qemu-*).
func TestParseRecordedReplies(t *testing.T) {
	for name, b := range readSeeds(t, "FuzzLinkReply") {
		size := int(le.Uint32(b[12:]))
		r, err := ParseLinkReply(b[:linkHeaderLen+size])
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if r.Error != LinkOK {
			t.Errorf("%s: error %v", name, r.Error)
		}
		// QEMU 7.2: common caps AUTH_SELECTION, AUTH_SPICE, MINI_HEADER.
		for _, c := range []int{CommonCapAuthSelection, CommonCapAuthSpice, CommonCapMiniHeader} {
			if !r.HasCommonCap(c) {
				t.Errorf("%s: reply lacks common cap %d: %x", name, c, r.CommonCaps)
			}
		}
		if r.HasCommonCap(CommonCapAuthSASL) {
			t.Errorf("%s: reply offers SASL", name)
		}
		if _, err := parsePubKey(r.PubKey[:]); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if !bytes.Equal(r.Marshal(), b[:linkHeaderLen+size]) {
			t.Errorf("%s: Marshal does not give back QEMU's bytes", name)
		}
		result := LinkError(le.Uint32(b[linkHeaderLen+size:]))
		want := LinkOK
		if name == "qemu-denied" {
			want = LinkErrPermissionDenied
		}
		if result != want {
			t.Errorf("%s: link result %v, want %v", name, result, want)
		}
	}
}

func TestLinkRoundTrip(t *testing.T) {
	for _, l := range []*Link{
		{ChannelType: ChannelMain, CommonCaps: viewerCaps},
		{ConnectionID: 0xdeadbeef, ChannelType: ChannelDisplay, ChannelID: 3, CommonCaps: viewerCaps, ChannelCaps: []uint32{0xfff, 1}},
		{ConnectionID: 7, ChannelType: ChannelUSBRedir, ChannelID: 1},
	} {
		got, err := ParseLink(l.Marshal())
		if err != nil {
			t.Fatalf("%v: %v", l, err)
		}
		if !reflect.DeepEqual(got, l) {
			t.Errorf("round trip: %+v, want %+v", got, l)
		}
	}
	r := &LinkReply{Error: LinkOK, CommonCaps: qemuReplyCaps, ChannelCaps: []uint32{9}}
	r.PubKey[0] = 0x30
	got, err := ParseLinkReply(r.Marshal())
	if err != nil || !reflect.DeepEqual(got, r) {
		t.Errorf("reply round trip: %+v %v", got, err)
	}
}

// linkBytes builds a link header and body with the given fields, for
// malformed inputs.
func linkBytes(magic string, major, size uint32, body []byte) []byte {
	b := []byte(magic)
	b = le.AppendUint32(b, major)
	b = le.AppendUint32(b, VersionMinor)
	b = le.AppendUint32(b, size)
	return append(b, body...)
}

// linkBody builds a SpiceLinkMess body.
func linkBody(nCommon, nChannel, off uint32, caps ...uint32) []byte {
	b := le.AppendUint32(nil, 0)
	b = append(b, byte(ChannelMain), 0)
	b = le.AppendUint32(b, nCommon)
	b = le.AppendUint32(b, nChannel)
	b = le.AppendUint32(b, off)
	for _, c := range caps {
		b = le.AppendUint32(b, c)
	}
	return b
}

func TestParseLinkErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    []byte
		code LinkError
		msg  string
	}{
		{"short header", []byte("REDQ\x02\x00"), LinkErrInvalidData, "link header of 6 bytes"},
		{"magic", linkBytes("RFB ", 2, 18, linkBody(0, 0, 18)), LinkErrInvalidMagic, "does not speak SPICE"},
		{"websocket", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), LinkErrInvalidMagic, "does not speak SPICE"},
		{"major 1", linkBytes(Magic, 1, 18, linkBody(0, 0, 18)), LinkErrVersionMismatch, "SPICE 1.2"},
		{"size too small", linkBytes(Magic, 2, 17, linkBody(0, 0, 18)[:17]), LinkErrInvalidData, "17 bytes"},
		{"size too big", linkBytes(Magic, 2, MaxLinkSize+1, nil), LinkErrInvalidData, "4097 bytes"},
		{"size mismatch", linkBytes(Magic, 2, 22, linkBody(0, 0, 18)), LinkErrInvalidData, "header says 22"},
		{"too many common caps", linkBytes(Magic, 2, 18, linkBody(MaxCaps+1, 0, 18)), LinkErrInvalidData, "at most 1024"},
		{"too many channel caps", linkBytes(Magic, 2, 18, linkBody(0, 1<<31, 18)), LinkErrInvalidData, "at most 1024"},
		{"caps outside", linkBytes(Magic, 2, 22, linkBody(2, 0, 18, 1)), LinkErrInvalidData, "do not fit"},
		{"caps offset inside header", linkBytes(Magic, 2, 22, linkBody(1, 0, 4, 1)), LinkErrInvalidData, "do not fit"},
		{"caps offset overflow", linkBytes(Magic, 2, 22, linkBody(1, 0, 0xfffffffe, 1)), LinkErrInvalidData, "do not fit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseLink(tc.b)
			if err == nil {
				t.Fatal("no error")
			}
			if Code(err) != tc.code || !strings.Contains(err.Error(), tc.msg) || !strings.HasPrefix(err.Error(), "spice: ") {
				t.Errorf("%v (code %v), want code %v and %q", err, Code(err), tc.code, tc.msg)
			}
		})
	}
}

func TestParseLinkCapsOffset(t *testing.T) {
	// A caps offset past the fixed part, with padding, is valid
	// (spice-server only checks bounds).
	b := linkBytes(Magic, 2, 26, linkBody(1, 1, 18+0, 7, 9))
	l, err := ParseLink(b)
	if err != nil || !reflect.DeepEqual(l.CommonCaps, []uint32{7}) || !reflect.DeepEqual(l.ChannelCaps, []uint32{9}) {
		t.Fatalf("%+v %v", l, err)
	}
	body := linkBody(1, 0, 22, 0xaaaa, 5)
	l, err = ParseLink(linkBytes(Magic, 2, uint32(len(body)), body))
	if err != nil || !reflect.DeepEqual(l.CommonCaps, []uint32{5}) {
		t.Fatalf("%+v %v", l, err)
	}
	if !l.HasCommonCap(0) || l.HasCommonCap(1) || !l.HasCommonCap(2) || l.HasCommonCap(40) {
		t.Errorf("caps %x", l.CommonCaps)
	}
}

func TestParseLinkReplyErrors(t *testing.T) {
	ok := (&LinkReply{CommonCaps: qemuReplyCaps}).Marshal()
	errReply := errorReply(LinkErrNeedSecured)
	for _, tc := range []struct {
		name string
		b    []byte
		code LinkError
	}{
		{"short", ok[:linkHeaderLen+10], LinkErrInvalidData},
		{"size below SpiceLinkReply", linkBytes(Magic, 2, 177, make([]byte, 177)), LinkErrInvalidData},
		{"not SPICE", []byte("RFB 003.008\n\x00\x00\x00\x00"), LinkErrInvalidMagic},
		{"caps outside", func() []byte {
			b := bytes.Clone(ok)
			le.PutUint32(b[linkHeaderLen+4+PubKeyLen:], 2)
			return b
		}(), LinkErrInvalidData},
	} {
		if _, err := ParseLinkReply(tc.b); Code(err) != tc.code {
			t.Errorf("%s: %v, want code %v", tc.name, err, tc.code)
		}
	}
	r, err := ParseLinkReply(errReply)
	if err != nil || r.Error != LinkErrNeedSecured {
		t.Errorf("error reply: %+v %v", r, err)
	}
}

func TestNames(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{ChannelMain.String(), "main"},
		{ChannelWebDAV.String(), "webdav"},
		{ChannelType(0).String(), "channel-type-0"},
		{ChannelType(12).String(), "channel-type-12"},
		{ChannelID{ChannelDisplay, 1}.String(), "display:1"},
		{LinkErrPermissionDenied.String(), "permission denied"},
		{LinkError(42).String(), "link error 42"},
		{TokenSpent.String(), "spent"},
	} {
		if tc.got != tc.want {
			t.Errorf("%q, want %q", tc.got, tc.want)
		}
	}
	if ChannelType(0).Known() || !ChannelUSBRedir.Known() || ChannelType(12).Known() {
		t.Error("Known")
	}
	if Code(nil) != LinkOK || Code(os.ErrClosed) != LinkErrError {
		t.Error("Code")
	}
}

func TestPubKeyLen(t *testing.T) {
	// SPICE_TICKET_PUBKEY_BYTES is exactly the DER of an RSA-1024 key
	// with exponent 65537.
	der, err := x509.MarshalPKIXPublicKey(&testKey().PublicKey)
	if err != nil || len(der) != PubKeyLen {
		t.Fatalf("%d bytes of DER, want %d: %v", len(der), PubKeyLen, err)
	}
	ours, err := proxyPubKey()
	if err != nil {
		t.Fatal(err)
	}
	k, err := parsePubKey(ours)
	if err != nil || k.N.BitLen() != TicketKeyBits {
		t.Fatalf("proxy key: %v", err)
	}
	// A shorter key, zero-padded, parses by its DER length.
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	padded, _ := marshalPub(small)
	if _, err := parsePubKey(padded); err != nil {
		t.Errorf("padded key: %v", err)
	}
	for _, b := range [][]byte{make([]byte, PubKeyLen), append([]byte{0x30, 0x82, 0xff, 0xff}, make([]byte, 158)...)} {
		if _, err := parsePubKey(b); err == nil || !strings.HasPrefix(err.Error(), "spice: ") {
			t.Errorf("%x: %v", b[:4], err)
		}
	}
}
