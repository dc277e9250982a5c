package crypto

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func genKeys(t testing.TB, n int) []Key {
	t.Helper()
	keys := make([]Key, n)
	for i := range keys {
		k, err := GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		keys[i] = k
	}
	return keys
}

func TestParseKeys(t *testing.T) {
	ks := genKeys(t, 5)
	for _, tt := range []struct {
		name, text string
		want       []Key
	}{
		{"one", ks[0].Text(), ks[:1]},
		{"one with newline", ks[0].Text() + "\n", ks[:1]},
		{"lines", ks[0].Text() + "\n" + ks[1].Text() + "\n", ks[:2]},
		{"commas", ks[1].Text() + "," + ks[0].Text(), []Key{ks[1], ks[0]}},
		{"comments and blanks", "# new key, dials\n" + ks[2].Text() + "\r\n\n  # old\n  " + ks[0].Text() + " \n\n", []Key{ks[2], ks[0]}},
		{"max", strings.Join([]string{ks[0].Text(), ks[1].Text(), ks[2].Text(), ks[3].Text()}, "\n"), ks[:4]},
	} {
		got, err := ParseKeys(tt.text)
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if len(got) != len(tt.want) {
			t.Errorf("%s: %d keys, want %d", tt.name, len(got), len(tt.want))
			continue
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("%s: key %d differs", tt.name, i)
			}
		}
	}
	for _, tt := range []struct{ name, text, errHas string }{
		{"empty", "", "empty"},
		{"only comments", "# nothing\n\n", "empty"},
		{"too many", strings.Join([]string{ks[0].Text(), ks[1].Text(), ks[2].Text(), ks[3].Text(), ks[4].Text()}, ","), "more than 4 keys"},
		{"repeat", ks[0].Text() + "\n" + ks[1].Text() + "\n" + ks[0].Text(), "key 3 repeats key 1"},
		{"bad second", ks[0].Text() + "\nnot-a-key\n", "key 2: crypto: bad network key"},
	} {
		_, err := ParseKeys(tt.text)
		if err == nil || !errors.Is(err, ErrBadKey) || !strings.Contains(err.Error(), tt.errHas) {
			t.Errorf("%s: error %v, want ErrBadKey containing %q", tt.name, err, tt.errHas)
		}
		for _, k := range ks {
			if err != nil && strings.Contains(err.Error(), k.Text()) {
				t.Errorf("%s: error reveals a key", tt.name)
			}
		}
	}
}

func TestReadKeysFile(t *testing.T) {
	dir := t.TempDir()
	ks := genKeys(t, 2)
	single := filepath.Join(dir, "single.key")
	if err := WriteKeyFile(single, ks[0]); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadKeysFile(single); err != nil || len(got) != 1 || got[0] != ks[0] {
		t.Fatalf("ReadKeysFile(written by WriteKeyFile) = %d keys, %v", len(got), err)
	}
	two := filepath.Join(dir, "two.key")
	if err := os.WriteFile(two, []byte(ks[1].Text()+"\n"+ks[0].Text()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadKeysFile(two); err != nil || len(got) != 2 || got[0] != ks[1] || got[1] != ks[0] {
		t.Fatalf("ReadKeysFile(two) = %d keys, %v", len(got), err)
	}
	if _, err := ReadKeysFile(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, []byte(strings.Repeat("#\n", 3000)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadKeysFile(big); !errors.Is(err, ErrBadKey) || !strings.Contains(err.Error(), big) {
		t.Fatalf("big file: %v", err)
	}
}

// acceptOverPipe runs an initiator with key ini against Accept with keys.
// The responder's network is "prod".
func acceptOverPipe(t *testing.T, network string, ini Key, keys []Key) (si, sr *Session, idx int, errI, errR error) {
	t.Helper()
	ci, cr := net.Pipe()
	defer ci.Close()
	defer cr.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		sr, idx, errR = Accept(cr, "prod", keys)
		if errR != nil {
			cr.Close()
		}
	}()
	si, errI = Handshake(ci, true, network, ini)
	if errI != nil {
		ci.Close()
	}
	<-done
	return si, sr, idx, errI, errR
}

func TestAcceptSeveralKeys(t *testing.T) {
	ks := genKeys(t, 5)
	accepted := ks[:3]
	for i, k := range accepted {
		si, sr, idx, errI, errR := acceptOverPipe(t, "prod", k, accepted)
		if errI != nil || errR != nil || idx != i {
			t.Fatalf("key %d: initiator %v, responder %v, index %d", i, errI, errR, idx)
		}
		// The sessions pair up: a record sealed by one opens at the other.
		rec, err := si.Seal(nil, []byte("hello"))
		if err != nil {
			t.Fatal(err)
		}
		if pt, err := sr.Open(nil, rec[2:]); err != nil || string(pt) != "hello" {
			t.Fatalf("key %d: open = %q, %v", i, pt, err)
		}
	}
	// A key not in the list, or the right key with another network name,
	// fails at the responder, which sends nothing back.
	for _, tc := range []struct {
		network string
		key     Key
	}{{"prod", ks[4]}, {"staging", ks[0]}} {
		_, _, idx, errI, errR := acceptOverPipe(t, tc.network, tc.key, accepted)
		if !errors.Is(errR, ErrHandshake) || !strings.Contains(errR.Error(), "wrong network key") || idx != -1 {
			t.Fatalf("stranger: responder %v, index %d", errR, idx)
		}
		if !errors.Is(errI, ErrHandshake) {
			t.Fatalf("stranger: initiator %v", errI)
		}
	}
	if _, _, _, _, errR := acceptOverPipe(t, "prod", ks[0], nil); !errors.Is(errR, ErrHandshake) {
		t.Fatalf("no keys: %v", errR)
	}
	if _, _, _, _, errR := acceptOverPipe(t, "prod", ks[0], ks[:5]); !errors.Is(errR, ErrHandshake) || !strings.Contains(errR.Error(), "5 keys") {
		t.Fatalf("too many keys: %v", errR)
	}
}

// FuzzParseKeys checks that ParseKeys never panics, returns 1..MaxKeys
// distinct keys or an ErrBadKey error, and that the keys it returns print
// back to a list it parses the same.
func FuzzParseKeys(f *testing.F) {
	k1, k2 := testKey(), Key{1, 2, 3}
	f.Add(k1.Text())
	f.Add(k1.Text() + "\n" + k2.Text() + "\n")
	f.Add("# comment\n" + k2.Text() + "," + k1.Text())
	f.Add(k1.Text() + "," + k1.Text())
	f.Add(",,\n\n#")
	f.Add("AAAA\n")
	f.Fuzz(func(t *testing.T, text string) {
		keys, err := ParseKeys(text)
		if err != nil {
			if !errors.Is(err, ErrBadKey) {
				t.Fatalf("error %v does not wrap ErrBadKey", err)
			}
			return
		}
		if len(keys) < 1 || len(keys) > MaxKeys {
			t.Fatalf("%d keys", len(keys))
		}
		texts := make([]string, len(keys))
		for i, k := range keys {
			texts[i] = k.Text()
		}
		again, err := ParseKeys(strings.Join(texts, "\n"))
		if err != nil || len(again) != len(keys) {
			t.Fatalf("reparse: %d keys, %v", len(again), err)
		}
		for i := range keys {
			if again[i] != keys[i] {
				t.Fatalf("reparse: key %d differs", i)
			}
		}
	})
}

// FuzzAccept is FuzzHandshakeResponder for a responder with three keys:
// whatever the input, Accept must not panic, must read at most one framed
// message, must fail with ErrHandshake and write nothing unless the input
// starts with a genuine first message for one of its keys, and must then
// report that key's index.
func FuzzAccept(f *testing.F) {
	keys := []Key{testKey(), {1}, {2}}
	for _, k := range keys {
		f.Add(validFirstMessage(f, "fuzz", k))
	}
	f.Add(validFirstMessage(f, "fuzz", Key{3}))
	f.Add(validFirstMessage(f, "other", keys[1]))
	f.Add([]byte{})
	f.Add([]byte{0, 48})
	f.Add(frame(1024, make([]byte, 1024)))
	f.Fuzz(func(t *testing.T, data []byte) {
		counter := &countingReader{r: bytes.NewReader(data)}
		var out bytes.Buffer
		rw := struct {
			io.Reader
			io.Writer
		}{counter, &out}
		s, idx, err := Accept(rw, "fuzz", keys)
		if counter.n > handshakeHeaderSize+maxHandshakeMessage {
			t.Fatalf("responder read %d bytes", counter.n)
		}
		if err != nil {
			if s != nil || idx != -1 || !errors.Is(err, ErrHandshake) || out.Len() != 0 {
				t.Fatalf("Accept = %v, %d, %v after writing %d bytes", s, idx, err, out.Len())
			}
			return
		}
		if idx < 0 || idx >= len(keys) || out.Len() != handshakeHeaderSize+48 {
			t.Fatalf("Accept succeeded with index %d, replied %d bytes", idx, out.Len())
		}
		// The message must really be one for keys[idx]: a responder with
		// that key alone accepts it too.
		if _, err := Handshake(struct {
			io.Reader
			io.Writer
		}{bytes.NewReader(data), io.Discard}, false, "fuzz", keys[idx]); err != nil {
			t.Fatalf("Accept chose key %d, which does not accept the message: %v", idx, err)
		}
	})
}
