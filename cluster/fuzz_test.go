package cluster

import (
	"testing"

	"github.com/iris-mesh/iris/overlay"
)

// loopOverlay is a stand-in for the layer below, for decoder fuzzing only:
// it drops every frame sent.
type loopOverlay struct{}

func (loopOverlay) ID() string                                          { return "self" }
func (loopOverlay) Zone() string                                        { return "" }
func (loopOverlay) Send(string, overlay.Priority, []byte, []byte) error { return nil }
func (loopOverlay) SendIfUp(string, overlay.Priority, []byte, []byte) error {
	return nil
}
func (loopOverlay) SetAppVersion(uint64)  {}
func (loopOverlay) SetAppInstance(uint64) {}
func (loopOverlay) Peers() []overlay.Peer { return nil }

type nopMember struct{}

func (nopMember) HandleRequest(r *Request) bool { r.Reply(r.Payload); return true }
func (nopMember) HandleBroadcast([]byte)        {}
func (nopMember) HandleSurvey(r *Request) bool  { r.Reply(r.Payload); return true }
func (nopMember) HandlePush([]byte) bool        { return true }

// FuzzHandleFrame feeds arbitrary frames from a peer: the node must never
// panic, whatever the bytes.
func FuzzHandleFrame(f *testing.F) {
	tbl, _ := (&table{Version: 3, Clusters: map[string]tableEntry{"echo": {Members: 2, Capacity: 256, Names: []string{"p/1", "p/2"}}}, Topics: map[string]uint32{"t": 1}}).encode()
	f.Add(append([]byte{byte(fTable)}, tbl...))
	f.Add(append(requestHead(7, 1000, "echo"), "payload"...))
	f.Add(append(replyHead(7, repOK), "reply"...))
	f.Add(replyHead(9, repUnavailable))
	f.Add(append(nameHead(fBroadcast, "echo"), "msg"...))
	f.Add(append(nameHead(fPublish, "t"), "ev"...))
	f.Add([]byte{byte(fTableReq)})
	f.Add(append(surveyHead(3, 1000, "echo"), "who"...))
	f.Add(append(surveyAnswerHead(3, repOK, "p/1"), "me"...))
	f.Add([]byte{byte(fSurveyAsked), 3, 2, 3, 'p', '/', '1', 3, 'p', '/', '2'})
	f.Add([]byte{byte(fSurveyAsked), 3, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add(append(pushHead(4, "echo"), "job"...))
	f.Add([]byte{byte(fPushAck), 4, 1})
	f.Add([]byte{byte(fCancel), 7, 4, 'e', 'c', 'h', 'o'})
	f.Add([]byte{byte(fRequest), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Add([]byte{byte(fTableAck), 3})
	ptbl, _ := (&table{Version: 4, Patterns: map[string]uint32{"news.*": 1, "a.>": 2}}).encode()
	f.Add(append([]byte{byte(fTable)}, ptbl...))
	dl, _ := (&tableDelta{From: 1, To: 2, Topics: map[string]uint32{"t": 0, "u": 1}}).encode()
	f.Add(append([]byte{byte(fTableDelta)}, dl...))
	f.Add([]byte{byte(fTableAck), 3, deltaCapable})
	f.Fuzz(func(t *testing.T, frame []byte) {
		n, err := New(nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := n.Start(loopOverlay{}); err != nil {
			t.Fatal(err)
		}
		defer n.Close()
		if _, err := n.Register("echo", nopMember{}, 0); err != nil {
			t.Fatal(err)
		}
		n.HandlePeer(overlay.Peer{ID: "peer", State: overlay.StateAlive, AppVersion: 1})
		n.HandleFrame("peer", frame)
		n.HandleFrame("peer", frame)
		_ = n.Clusters()
		_ = n.Topics()
	})
}

// FuzzDecodeTable decodes arbitrary tables: errors are fine, panics are not.
func FuzzDecodeTable(f *testing.F) {
	tbl, _ := (&table{Version: 1, Clusters: map[string]tableEntry{"a": {Members: 1, Capacity: 1, Names: []string{"w"}}}}).encode()
	f.Add(tbl)
	f.Add([]byte{0x81, 0xa1, 'c', 0x81, 0xa0, 0x80})
	ptbl, _ := (&table{Version: 2, Patterns: map[string]uint32{"news.*": 1, "a.>": 2, "*": 1}}).encode()
	f.Add(ptbl)
	f.Fuzz(func(t *testing.T, b []byte) {
		if tb, err := decodeTable(b); err == nil {
			for name := range tb.Clusters {
				if validName(name) != nil {
					t.Fatal("accepted a bad name")
				}
			}
			var s sublist[int]
			for p := range tb.Patterns {
				if validSubject(p) != nil || !isPattern(p) {
					t.Fatalf("accepted a bad pattern %q", p)
				}
				s.insert(p, 1)
			}
			for p := range tb.Patterns {
				if !s.remove(p, 1) {
					t.Fatalf("pattern %q not removed", p)
				}
			}
			if s.n != 0 || !s.root.empty() {
				t.Fatal("trie not empty")
			}
		}
	})
}

// FuzzDecodeDelta decodes arbitrary table deltas: errors are fine, panics
// are not, and what is accepted names only valid clusters, topics and
// patterns and moves the version forward.
func FuzzDecodeDelta(f *testing.F) {
	d, _ := (&tableDelta{Instance: 5, From: 1, To: 2, Clusters: map[string]tableEntry{"a": {Members: 1, Capacity: 1, Names: []string{"w"}}}, Gone: []string{"b"}, Topics: map[string]uint32{"t": 0, "u": 2}, Patterns: map[string]uint32{"news.*": 1}}).encode()
	f.Add(d)
	g, _ := (&tableDelta{Instance: 5, From: 3, To: 2}).encode()
	f.Add(g)
	f.Add([]byte{0x83, 0xa1, 'f', 0x01, 0xa1, 'v', 0x02, 0xa1, 'g', 0x91, 0xa0})
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := decodeDelta(b)
		if err != nil {
			return
		}
		if d.To <= d.From {
			t.Fatal("accepted a delta that does not move forward")
		}
		for name := range d.Clusters {
			if validName(name) != nil {
				t.Fatal("accepted a bad cluster name")
			}
		}
		for _, name := range d.Gone {
			if validName(name) != nil {
				t.Fatal("accepted a bad cluster name")
			}
		}
		for p := range d.Patterns {
			if validSubject(p) != nil || !isPattern(p) {
				t.Fatalf("accepted a bad pattern %q", p)
			}
		}
	})
}
