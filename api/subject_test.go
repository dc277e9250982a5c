package api

import (
	"errors"
	"testing"
)

func TestValidSubject(t *testing.T) {
	for _, c := range []struct {
		s  string
		ok bool
	}{
		{"a", true}, {"a.b.c", true}, {"*", true}, {">", true}, {"a.*", true},
		{"a.>", true}, {"*.b.>", true}, {"a.*.c", true}, {"a-b_c.d:e", true},
		{"", false}, {"a..b", false}, {".a", false}, {"a.", false}, {".", false},
		{"a.>.b", false}, {">.a", false}, {"a*", false}, {"a.b*", false},
		{"a.>b", false}, {"**", false}, {">>", false}, {"a.*x.c", false},
	} {
		err := ValidSubject(c.s)
		if (err == nil) != c.ok {
			t.Errorf("ValidSubject(%q) = %v, want ok=%v", c.s, err, c.ok)
		}
		if err != nil && !errors.Is(err, ErrBadSubject) {
			t.Errorf("ValidSubject(%q) = %v, does not wrap ErrBadSubject", c.s, err)
		}
	}
}

// subjectCases are the matching semantics, shared with the daemon's trie
// tests (cluster) through the same table there.
var subjectCases = []struct {
	pattern, topic string
	match          bool
}{
	{"a", "a", true},
	{"a", "b", false},
	{"a.b", "a.b", true},
	{"a.b", "a.b.c", false},
	{"a.b", "a", false},
	{"a.*", "a.b", true},
	{"a.*", "a", false},
	{"a.*", "a.b.c", false},
	{"*", "a", true},
	{"*", "a.b", false},
	{"*.b", "a.b", true},
	{"*.b", "a.c", false},
	{"a.*.c", "a.x.c", true},
	{"a.*.c", "a.x.d", false},
	{"a.>", "a.b", true},
	{"a.>", "a.b.c.d", true},
	{"a.>", "a", false},
	{">", "a", true},
	{">", "a.b.c", true},
	{"*.>", "a", false},
	{"*.>", "a.b", true},
	{"a.*.>", "a.b", false},
	{"a.*.>", "a.b.c", true},
	// Literal dots: a topic is split on dots, wildcards or not.
	{"a.b", "a.b", true},
	{"a.*", "a.b.", false},
	{"a.>", "a..b", false},
	{">", ".a", false},
	{"*", "", false},
	// A wildcard character published in a topic is just a token.
	{"a.*", "a.*", true},
	{"a.b", "a.*", false},
}

func TestMatchSubject(t *testing.T) {
	for _, c := range subjectCases {
		if got := MatchSubject(c.pattern, c.topic); got != c.match {
			t.Errorf("MatchSubject(%q, %q) = %v, want %v", c.pattern, c.topic, got, c.match)
		}
	}
}

func TestIsPattern(t *testing.T) {
	for s, want := range map[string]bool{"a": false, "a.b": false, "a.*": true, ">": true, "*.b": true, "a.b.>": true} {
		if got := IsPattern(s); got != want {
			t.Errorf("IsPattern(%q) = %v, want %v", s, got, want)
		}
	}
}
