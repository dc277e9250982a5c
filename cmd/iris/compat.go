package main

import (
	"context"
	"flag"
	"strings"

	"github.com/iris-mesh/iris/sdk"
)

// The older command interface: a func(*env, []string) error that parses
// its own arguments. legacy turns one into a table entry, so that a command
// written that way is added with one line:
//
//	legacy("survey", "CLUSTER [MESSAGE]", "ask every member, print the answers", cmdSurvey),
//
// iris answers -h for it (printing help and doing nothing else), and the
// common flags work before its name; new commands should declare their
// flags in a command's flags function instead, to get flags anywhere.

// legacy returns a command that runs f with the arguments after its name.
func legacy(name, args, summary string, f func(e *env, args []string) error) *command {
	return &command{
		name: name, args: args, summary: summary, help: summary + ".", rawArgs: true,
		flags: func(_ *flag.FlagSet, e *env) func([]string) error {
			return func(args []string) error { return f(e, args) }
		},
	}
}

// wantsHelp reports whether args ask for help before any "--".
func wantsHelp(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-h", "-help", "--help":
			return true
		}
	}
	return false
}

// target parses "NAME [MESSAGE]": the message as message reads it.
func (e *env) target(args []string, what string, wantMsg bool) (string, []byte, error) {
	name, rest, err := name(args, what)
	if err != nil {
		return "", nil, err
	}
	if !wantMsg {
		return name, nil, noMore(rest)
	}
	msg, err := e.message(rest, "")
	return name, msg, err
}

// send runs a fire-and-forget command: "NAME [MESSAGE]" sent with f; the
// graceful close waits until the message is written.
func (e *env) send(args []string, what string, f func(*sdk.Conn, context.Context, string, []byte) error) error {
	name, msg, err := e.target(args, what, true)
	if err != nil {
		return err
	}
	c, err := e.connect()
	if err != nil {
		return err
	}
	if err := f(c, e.ctx, name, msg); err != nil {
		c.Close()
		return err
	}
	return c.Close()
}

// splitName takes the leading NAME off args, leaving the flags after it.
func splitName(args []string) (string, []string) {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return "", args
	}
	return args[0], args[1:]
}
