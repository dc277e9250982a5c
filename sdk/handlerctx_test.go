package sdk

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

// The handler context ends at its deadline whether or not Done was called
// before, and Err, Done and context.Cause agree.
func TestHandlerCtxDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		for _, early := range []bool{false, true} {
			base, stop := context.WithCancel(context.Background())
			h := newHandlerCtx(base, time.Now().Add(time.Second), false)
			if early {
				h.Done()
			}
			if err := h.Err(); err != nil {
				t.Fatalf("early=%v: Err before the deadline = %v", early, err)
			}
			time.Sleep(time.Second)
			synctest.Wait()
			if err := h.Err(); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("early=%v: Err at the deadline = %v, want DeadlineExceeded", early, err)
			}
			select {
			case <-h.Done():
			default:
				t.Fatalf("early=%v: Done not closed at the deadline", early)
			}
			if err := context.Cause(h); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("early=%v: Cause = %v", early, err)
			}
			h.cancel()
			stop()
		}
	})
}

// cancel (the caller's CANCEL, or the handler returning) and the end of
// the connection's base context both end the handler context, and
// contexts derived from it end with it.
func TestHandlerCtxCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base, stop := context.WithCancel(context.Background())
		defer stop()
		h := newHandlerCtx(base, time.Now().Add(time.Hour), true)
		if !IsSurvey(h) {
			t.Fatal("IsSurvey = false for a survey's handler context")
		}
		child, childStop := context.WithTimeout(h, 2*time.Hour)
		defer childStop()
		h.cancel()
		synctest.Wait()
		if err := h.Err(); !errors.Is(err, context.Canceled) {
			t.Fatalf("Err after cancel = %v", err)
		}
		if err := child.Err(); !errors.Is(err, context.Canceled) {
			t.Fatalf("derived context's Err after cancel = %v", err)
		}

		h2 := newHandlerCtx(base, time.Now().Add(time.Hour), false)
		if IsSurvey(h2) {
			t.Fatal("IsSurvey = true for a request's handler context")
		}
		stop()
		if err := h2.Err(); !errors.Is(err, context.Canceled) {
			t.Fatalf("Err after the base ended = %v", err)
		}
		<-h2.Done()
		h2.cancel()
	})
}
