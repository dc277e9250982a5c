package api

import (
	"errors"
	"fmt"
	"strings"
)

// Subjects (protocol v1.1). A v1.1 session subscribes to a subject: tokens
// separated by dots, where the token "*" matches exactly one token and the
// token ">", only as the last token, matches one or more trailing tokens
// (the conventions of NATS). "a.*" matches "a.b" but not "a" or "a.b.c";
// "a.>" matches "a.b" and "a.b.c" but not "a". A subject without wildcard
// tokens matches exactly itself. Topics of v1.0-draft2 sessions are plain
// names: a v1.0 SUBSCRIBE to "a.*" is the literal topic "a.*", and a
// published topic is always matched as it is, whatever session sent it.

// ErrBadSubject is wrapped by ValidSubject's errors.
var ErrBadSubject = errors.New("api: bad subject")

// ValidSubject reports why s cannot be subscribed to in a v1.1 session: it
// is empty, has an empty token ("a..b", ".a", "a."), uses "*" or ">" inside
// a token ("a*", "b>c"), or has ">" before its last token. nil means it is
// a valid subject, with or without wildcards.
func ValidSubject(s string) error {
	if s == "" {
		return fmt.Errorf("%w: empty", ErrBadSubject)
	}
	for i, rest := 0, s; ; i++ {
		tok, tail, more := strings.Cut(rest, ".")
		switch {
		case tok == "":
			return fmt.Errorf("%w: %q has an empty token (token %d)", ErrBadSubject, s, i+1)
		case tok == ">" && more:
			return fmt.Errorf("%w: %q has \">\" before its last token", ErrBadSubject, s)
		case len(tok) > 1 && strings.ContainsAny(tok, "*>"):
			return fmt.Errorf("%w: %q uses a wildcard inside the token %q (\"*\" and \">\" are whole tokens)", ErrBadSubject, s, tok)
		}
		if !more {
			return nil
		}
		rest = tail
	}
}

// IsPattern reports whether subject s has a wildcard token ("*" or ">").
// It assumes s is valid (ValidSubject).
func IsPattern(s string) bool {
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

// MatchSubject reports whether the published topic matches the valid
// subject pattern. A topic with an empty token ("a..b") matches only a
// pattern equal to it. The cost grows with the number of tokens; the daemon
// matches many patterns at once with a token trie instead.
func MatchSubject(pattern, topic string) bool {
	if pattern == topic {
		return true
	}
	for {
		ptok, prest, pmore := strings.Cut(pattern, ".")
		ttok, trest, tmore := strings.Cut(topic, ".")
		if ttok == "" {
			return false
		}
		switch ptok {
		case ">":
			return !hasEmptyToken(topic)
		case "*":
		default:
			if ptok != ttok {
				return false
			}
		}
		if pmore != tmore {
			return false
		}
		if !pmore {
			return true
		}
		pattern, topic = prest, trest
	}
}

func hasEmptyToken(s string) bool {
	return s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..")
}
