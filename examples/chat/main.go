// Command chat is a chat room over publish/subscribe: every line typed is
// published to the room's topic, and every line anyone publishes there is
// printed. Run it on several hosts (each with its irisd) or several
// terminals:
//
//	go run ./examples/chat -name alice -room lobby
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"

	"github.com/iris-mesh/iris/sdk"
)

func main() {
	addr := flag.String("addr", sdk.DefaultAddr, "address of the local irisd")
	name := flag.String("name", os.Getenv("USER"), "your name in the room")
	room := flag.String("room", "lobby", "the room: a topic")
	flag.Parse()
	if err := chat(*addr, *name, "chat."+*room); err != nil {
		fmt.Fprintln(os.Stderr, "chat:", err)
		os.Exit(1)
	}
}

func chat(addr, name, topic string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	cfg := sdk.DefaultConfig()
	cfg.Addr = addr
	conn, err := sdk.Connect(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	// One handler thread: lines print in the order each author sent them.
	one := sdk.TopicLimits{EventThreads: 1}
	print := sdk.TopicHandlerFunc(func(line []byte) { fmt.Println(string(line)) })
	if err := conn.Subscribe(ctx, topic, print, &one); err != nil {
		return err
	}
	conn.Publish(ctx, topic, []byte(name+" joined"))
	lines := make(chan string)
	go func() { // reads stdin until EOF; ends with the process
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				return conn.Publish(context.Background(), topic, []byte(name+" left"))
			}
			if strings.TrimSpace(line) == "" {
				continue
			}
			if err := conn.Publish(ctx, topic, []byte(name+": "+line)); err != nil {
				return err
			}
		case <-ctx.Done():
			return conn.Publish(context.Background(), topic, []byte(name+" left"))
		case <-conn.Done():
			return conn.Err()
		}
	}
}
