package sdk

import (
	"context"
	"sync"
	"time"
)

// handlerCtx is the context a request handler runs with: it ends at the
// request's deadline, when the caller cancels the request (v1.1) or when
// the connection is finished. Most handlers never look at their context,
// so the timer and the Done channel are made only when Done is first
// called; until then Err compares the deadline with the clock. This saves
// a runtime timer (armed and stopped) and three allocations per request.
type handlerCtx struct {
	parent   context.Context // the connection's base context
	deadline time.Time
	survey   bool // answering a survey question (IsSurvey)

	mu        sync.Mutex
	inner     context.Context // made by the first Done; then it answers everything
	stop      context.CancelFunc
	cancelled bool // cancel was called
}

func newHandlerCtx(parent context.Context, deadline time.Time, survey bool) *handlerCtx {
	return &handlerCtx{parent: parent, deadline: deadline, survey: survey}
}

// Deadline implements context.Context.
func (h *handlerCtx) Deadline() (time.Time, bool) { return h.deadline, true }

// Done implements context.Context.
func (h *handlerCtx) Done() <-chan struct{} { return h.made().Done() }

// made returns the context made by the first call to Done or Value,
// making it if need be.
func (h *handlerCtx) made() context.Context {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.inner == nil {
		h.inner, h.stop = context.WithDeadline(h.parent, h.deadline)
		if h.cancelled {
			h.stop()
		}
	}
	return h.inner
}

// Err implements context.Context.
func (h *handlerCtx) Err() error {
	h.mu.Lock()
	inner, cancelled := h.inner, h.cancelled
	h.mu.Unlock()
	switch {
	case inner != nil:
		return inner.Err()
	case cancelled:
		return context.Canceled
	}
	if err := h.parent.Err(); err != nil {
		return err
	}
	if !time.Now().Before(h.deadline) {
		return context.DeadlineExceeded
	}
	return nil
}

// Value implements context.Context. It answers from the context Done
// makes (making it): the context package finds the cancelCtx behind it, so
// that contexts derived from this one are cancelled with it without a
// goroutine each, and context.Cause agrees with Err.
func (h *handlerCtx) Value(key any) any {
	if _, ok := key.(surveyKey); ok {
		return h.survey
	}
	return h.made().Value(key)
}

// cancel cancels the context; it is also how its resources are released
// once the handler has returned.
func (h *handlerCtx) cancel() {
	h.mu.Lock()
	h.cancelled = true
	stop := h.stop
	h.mu.Unlock()
	if stop != nil {
		stop()
	}
}

// String describes the context, as the context package's own do.
func (h *handlerCtx) String() string { return "sdk.handlerContext" }
