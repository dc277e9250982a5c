package crypto_test

import (
	"fmt"
	"net"

	"github.com/iris-mesh/iris/crypto"
)

// Two daemons of network "prod" authenticate a connection and exchange one
// encrypted record.
func ExampleHandshake() {
	key, err := crypto.GenerateKey()
	if err != nil {
		panic(err)
	}
	dialer, listener := net.Pipe() // a TCP connection in a daemon
	defer dialer.Close()
	defer listener.Close()

	done := make(chan struct{})
	go func() { // the accepting daemon
		defer close(done)
		s, err := crypto.Handshake(listener, false, "prod", key)
		if err != nil {
			fmt.Println("responder:", err)
			return
		}
		buf := make([]byte, 0, crypto.RecordHeaderSize+65535)
		body, err := crypto.ReadRecord(listener, buf)
		if err != nil {
			fmt.Println("read:", err)
			return
		}
		msg, err := s.Open(body[:0], body) // decrypt in place
		if err != nil {
			fmt.Println("open:", err)
			return
		}
		fmt.Printf("responder got %q\n", msg)
	}()

	s, err := crypto.Handshake(dialer, true, "prod", key)
	if err != nil {
		panic(err)
	}
	record, err := s.Seal(nil, []byte("hello, prod"))
	if err != nil {
		panic(err)
	}
	if _, err := dialer.Write(record); err != nil {
		panic(err)
	}
	<-done
	// Output: responder got "hello, prod"
}

// All per-network secrets come from the one network key.
func ExampleDerivePSK() {
	key, err := crypto.ParseKey("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n")
	if err != nil {
		panic(err)
	}
	psk := crypto.DerivePSK(key, "prod")
	fmt.Println("psk bytes:", len(psk))
	fmt.Println("gossip key bytes:", len(crypto.DeriveGossipKey(key, "prod")))
	// Output:
	// psk bytes: 32
	// gossip key bytes: 32
}
