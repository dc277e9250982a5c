package cluster

import (
	"errors"
	"fmt"
	"strings"
)

// Subjects. A subscription made with SubscribeSubject names a subject:
// tokens separated by dots, where the token "*" matches exactly one token
// and the token ">", last only, matches one or more trailing tokens (as in
// NATS). A published topic is split on its dots and matched against every
// pattern; one with an empty token ("a..b") matches no pattern. Patterns
// live in a token trie (sublist), so matching a topic costs in proportion
// to its depth (and to the wildcard branches it meets), not to the number
// of patterns.

// ErrBadSubject is returned by SubscribeSubject for a subject with an empty
// token or a misplaced wildcard.
var ErrBadSubject = errors.New("cluster: bad subject")

// validSubject checks a subject for SubscribeSubject and for the patterns
// of a peer's table. It is the rule of api.ValidSubject, written again on
// purpose: cluster knows nothing of the app protocol, and api (with the
// SDK) imports nothing of the daemon's (internal/layers).
func validSubject(s string) error {
	if err := validName(s); err != nil {
		return err
	}
	for rest := s; ; {
		tok, tail, more := strings.Cut(rest, ".")
		switch {
		case tok == "":
			return fmt.Errorf("%w: %q has an empty token", ErrBadSubject, s)
		case tok == ">" && more:
			return fmt.Errorf("%w: %q has \">\" before its last token", ErrBadSubject, s)
		case len(tok) > 1 && strings.ContainsAny(tok, "*>"):
			return fmt.Errorf("%w: %q uses a wildcard inside a token", ErrBadSubject, s)
		}
		if !more {
			return nil
		}
		rest = tail
	}
}

// isPattern reports whether the valid subject s has a wildcard token.
func isPattern(s string) bool {
	for rest := s; ; {
		tok, tail, more := strings.Cut(rest, ".")
		if tok == "*" || tok == ">" {
			return true
		}
		if !more {
			return false
		}
		rest = tail
	}
}

// hasEmptyToken reports whether topic has an empty token; such a topic
// matches no pattern.
func hasEmptyToken(s string) bool {
	return s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..")
}

// sublist is a token trie of subject patterns, each holding values (local
// subscriptions or remote daemons). It is not safe for concurrent use:
// the node mutates it under n.mu and matches under n.mu.RLock.
type sublist[V comparable] struct {
	root level[V]
	n    int // values held
}

// level is the set of nodes one token deep.
type level[V comparable] struct {
	lit map[string]*snode[V] // literal tokens
	pwc *snode[V]            // "*"
	fwc *snode[V]            // ">"
}

type snode[V comparable] struct {
	next *level[V] // the tokens after this one; nil when none
	vals []V       // the patterns that end here
}

func (l *level[V]) empty() bool { return len(l.lit) == 0 && l.pwc == nil && l.fwc == nil }

func (n *snode[V]) empty() bool { return len(n.vals) == 0 && (n.next == nil || n.next.empty()) }

// child returns the node of tok in l, creating it if create.
func (l *level[V]) child(tok string, create bool) *snode[V] {
	var p **snode[V]
	switch tok {
	case "*":
		p = &l.pwc
	case ">":
		p = &l.fwc
	default:
		if n := l.lit[tok]; n != nil || !create {
			return n
		}
		if l.lit == nil {
			l.lit = make(map[string]*snode[V])
		}
		n := &snode[V]{}
		l.lit[tok] = n
		return n
	}
	if *p == nil && create {
		*p = &snode[V]{}
	}
	return *p
}

// drop removes the node of tok from l.
func (l *level[V]) drop(tok string) {
	switch tok {
	case "*":
		l.pwc = nil
	case ">":
		l.fwc = nil
	default:
		delete(l.lit, tok)
	}
}

// insert adds v under the valid pattern.
func (s *sublist[V]) insert(pattern string, v V) {
	l := &s.root
	for rest := pattern; ; {
		tok, tail, more := strings.Cut(rest, ".")
		n := l.child(tok, true)
		if !more {
			n.vals = append(n.vals, v)
			s.n++
			return
		}
		if n.next == nil {
			n.next = &level[V]{}
		}
		l, rest = n.next, tail
	}
}

// remove takes one v from under pattern and prunes the nodes left empty.
// It reports whether v was there.
func (s *sublist[V]) remove(pattern string, v V) bool {
	type step struct {
		l   *level[V]
		tok string
		n   *snode[V]
	}
	var path []step
	l := &s.root
	for rest := pattern; ; {
		tok, tail, more := strings.Cut(rest, ".")
		n := l.child(tok, false)
		if n == nil {
			return false
		}
		path = append(path, step{l, tok, n})
		if !more {
			break
		}
		if n.next == nil {
			return false
		}
		l, rest = n.next, tail
	}
	last := path[len(path)-1].n
	i := -1
	for j, x := range last.vals {
		if x == v {
			i = j
			break
		}
	}
	if i < 0 {
		return false
	}
	last.vals = append(last.vals[:i:i], last.vals[i+1:]...)
	s.n--
	for j := len(path) - 1; j >= 0 && path[j].n.empty(); j-- {
		path[j].l.drop(path[j].tok)
	}
	return true
}

// match appends to out the values of every pattern topic matches (a value
// under several matching patterns comes once per pattern) and returns it.
func (s *sublist[V]) match(topic string, out []V) []V {
	if s.n == 0 {
		return out
	}
	return s.root.match(topic, out)
}

// match matches topic, the tokens left, against l. An empty token matches
// nothing, so a topic with one matches no pattern.
func (l *level[V]) match(topic string, out []V) []V {
	tok, rest, more := strings.Cut(topic, ".")
	if tok == "" {
		return out
	}
	if l.fwc != nil && !hasEmptyToken(topic) {
		out = append(out, l.fwc.vals...) // ">" takes tok and whatever follows
	}
	if n := l.lit[tok]; n != nil {
		out = n.matchRest(rest, more, out)
	}
	if l.pwc != nil {
		out = l.pwc.matchRest(rest, more, out)
	}
	return out
}

func (n *snode[V]) matchRest(rest string, more bool, out []V) []V {
	if !more {
		return append(out, n.vals...)
	}
	if n.next == nil {
		return out
	}
	return n.next.match(rest, out)
}
