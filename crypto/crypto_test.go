package crypto

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	xhkdf "golang.org/x/crypto/hkdf"
)

// testKey is 00 01 02 ... 1f, the key of the known-answer vectors.
func testKey() Key {
	var k Key
	for i := range k {
		k[i] = byte(i)
	}
	return k
}

const testKeyText = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="

func TestGenerateKey(t *testing.T) {
	a, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	b, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if a == b || a == (Key{}) {
		t.Fatalf("GenerateKey returned %x and %x", a, b)
	}
}

func TestKeyString(t *testing.T) {
	k := testKey()
	if got := k.Text(); got != testKeyText {
		t.Fatalf("Text() = %q, want %q", got, testKeyText)
	}
	for _, text := range []string{testKeyText, "  " + testKeyText + "\n", "\t\r\n" + testKeyText + " \r\n\n"} {
		got, err := ParseKey(text)
		if err != nil {
			t.Fatalf("ParseKey(%q): %v", text, err)
		}
		if got != k {
			t.Fatalf("ParseKey(%q) = %x, want %x", text, got, k)
		}
	}
}

func TestParseKeyErrors(t *testing.T) {
	short := base64.StdEncoding.EncodeToString(make([]byte, 31)) // 44 chars, 31 bytes
	nonCanonical := testKeyText[:42] + "9="                      // nonzero padding bits
	tests := map[string]string{
		"empty":         "",
		"blank":         " \n\t",
		"short":         "AAEC",
		"unpadded":      strings.TrimRight(testKeyText, "="),
		"too long":      testKeyText + "AAAA",
		"bad char":      "!" + testKeyText[1:],
		"url alphabet":  strings.Repeat("-", 43) + "=",
		"31 bytes":      short,
		"non-canonical": nonCanonical,
		"inner space":   testKeyText[:20] + " " + testKeyText[21:],
	}
	for name, text := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := ParseKey(text)
			if !errors.Is(err, ErrBadKey) {
				t.Fatalf("ParseKey(%q) error = %v, want ErrBadKey", text, err)
			}
			if len(strings.TrimSpace(text)) > 8 && strings.Contains(err.Error(), strings.TrimSpace(text)) {
				t.Fatalf("error %q leaks the key text", err)
			}
		})
	}
}

func TestKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "network.key")
	k := testKey()
	if err := WriteKeyFile(path, k); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Errorf("mode = %v, want 0600", mode)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != testKeyText+"\n" {
		t.Errorf("file = %q, want %q", data, testKeyText+"\n")
	}
	got, err := ReadKeyFile(path)
	if err != nil || got != k {
		t.Fatalf("ReadKeyFile = %x, %v; want %x", got, err, k)
	}

	// Never overwrite an existing key.
	other, _ := GenerateKey()
	if err := WriteKeyFile(path, other); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second WriteKeyFile error = %v, want fs.ErrExist", err)
	}
	if got, _ := ReadKeyFile(path); got != k {
		t.Fatal("second WriteKeyFile changed the file")
	}
	if err := WriteKeyFile(filepath.Join(t.TempDir(), "missing", "k"), k); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("WriteKeyFile into a missing directory: error = %v, want fs.ErrNotExist", err)
	}
}

func TestReadKeyFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if k, err := ReadKeyFile(write("ws", "\n  "+testKeyText+" \r\n\n")); err != nil || k != testKey() {
		t.Errorf("whitespace: got %x, %v", k, err)
	}
	if _, err := ReadKeyFile(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing: error = %v, want fs.ErrNotExist", err)
	}
	for name, content := range map[string]string{
		"empty": "",
		"bad":   "not a key\n",
		"huge":  strings.Repeat(" ", maxKeyFileSize) + testKeyText,
	} {
		p := write(name, content)
		_, err := ReadKeyFile(p)
		if !errors.Is(err, ErrBadKey) || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: error = %v, want ErrBadKey naming the path", name, err)
		}
	}
}

// Known answers, computed independently (Python hmac/hashlib, RFC 5869) for
// the key 00..1f, salt nil.
var deriveVectors = []struct {
	network, psk, gossip string
}{
	{
		network: "prod",
		psk:     "950676ee9b139075c3eec24bc82ac0bcf47c2c5f7d120aa12d559c8a0d280469",
		gossip:  "9a651a68b227cb9bf4039beebb699b9150dc78fae22808041458ccb61063a048",
	},
	{
		network: "",
		psk:     "4ba8744bebcc9d71b4281ba578d3e5b3af578e0d718c7d95c6c68d45dbb1431d",
		gossip:  "d76b2a5227406b6b772063a65459ccf61fe185aef8859a0bc6cd6a0ed7c1a70c",
	},
}

func TestDeriveKnownAnswers(t *testing.T) {
	k := testKey()
	for _, v := range deriveVectors {
		psk := DerivePSK(k, v.network)
		if got := hex.EncodeToString(psk[:]); got != v.psk {
			t.Errorf("DerivePSK(%q) = %s, want %s", v.network, got, v.psk)
		}
		if got := hex.EncodeToString(DeriveGossipKey(k, v.network)); got != v.gossip {
			t.Errorf("DeriveGossipKey(%q) = %s, want %s", v.network, got, v.gossip)
		}
	}
}

// xDerive is an independent HKDF-SHA256 from golang.org/x/crypto/hkdf.
func xDerive(t *testing.T, k Key, info string, n int) []byte {
	t.Helper()
	out := make([]byte, n)
	if _, err := io.ReadFull(xhkdf.New(sha256.New, k[:], nil, []byte(info)), out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestDeriveMatchesXCrypto(t *testing.T) {
	keys := []Key{testKey(), {}, {0xff, 0x01}}
	networks := []string{"prod", "", "staging", "a\x00b", "ünïcode"}
	for _, k := range keys {
		for _, network := range networks {
			psk := DerivePSK(k, network)
			if want := xDerive(t, k, "iris noise psk\x00"+network, 32); !bytes.Equal(psk[:], want) {
				t.Errorf("DerivePSK(%x, %q) = %x, want %x", k, network, psk, want)
			}
			if got, want := DeriveGossipKey(k, network), xDerive(t, k, "iris memberlist\x00"+network, 32); !bytes.Equal(got, want) {
				t.Errorf("DeriveGossipKey(%x, %q) = %x, want %x", k, network, got, want)
			}
		}
	}
}

func TestDeriveSeparation(t *testing.T) {
	k := testKey()
	other := k
	other[31] ^= 1
	psk := func(k Key, network string) string {
		p := DerivePSK(k, network)
		return string(p[:])
	}
	seen := map[string]string{
		"psk":          psk(k, "prod"),
		"gossip":       string(DeriveGossipKey(k, "prod")),
		"psk staging":  psk(k, "staging"),
		"psk otherkey": psk(other, "prod"),
		"psk prod2":    psk(k, "prod2"),
	}
	byValue := map[string]string{}
	for name, v := range seen {
		if prev, ok := byValue[v]; ok {
			t.Errorf("%s and %s derive the same key", prev, name)
		}
		byValue[v] = name
	}
	g := DeriveGossipKey(k, "prod")
	g[0] ^= 0xff
	if bytes.Equal(g, DeriveGossipKey(k, "prod")) {
		t.Error("DeriveGossipKey returned shared memory")
	}
}

func TestKeyFormattingRedacts(t *testing.T) {
	k, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{fmt.Sprint(k), fmt.Sprintf("%v %s %#v", k, k, k)} {
		if strings.Contains(s, k.Text()) {
			t.Fatalf("formatted key leaks the secret: %s", s)
		}
	}
}
