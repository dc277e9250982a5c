package sdk

import (
	"context"
	"errors"
)

// Sentinel errors. Check them with errors.Is: the SDK wraps them with detail.
var (
	// ErrClosed is returned by calls on a connection that Close has closed,
	// and wrapped (together with the cause) by every error of a call that
	// failed because the connection to the daemon was lost, including the
	// requests still waiting for their replies at that moment.
	ErrClosed = errors.New("sdk: connection closed")

	// ErrDenied is matched by a *DeniedError, returned by Connect and
	// Register when the daemon refuses the connection.
	ErrDenied = errors.New("sdk: connection denied")

	// ErrTimeout is returned by Request when the request timed out: the
	// daemon answered it as timed out (nobody replied in time, or the
	// cluster has no members), or the context's deadline passed first.
	// Tunnel returns it (wrapped) when the build failed or timed out, and
	// the tunnel calls when their context's deadline passed. It implements
	// net.Error with Timeout() true, and errors.Is(ErrTimeout,
	// context.DeadlineExceeded) holds.
	ErrTimeout error = &timeoutError{}

	// ErrTooLarge is returned when a payload is longer than the connection's
	// Limits.MaxMessageLen allows; nothing is sent.
	ErrTooLarge = errors.New("sdk: message too large")

	// ErrOverloaded is matched (with errors.Is) by a *RemoteError whose fault
	// is this error's text: the service was too busy to queue the request
	// (see ServiceLimits). Another binding's service may send the same text.
	ErrOverloaded = errors.New("sdk: service overloaded")

	// ErrTunnelClosed is matched by the errors of Tunnel calls made after the
	// tunnel was closed: by its Close, by the far end (Send only; Recv
	// returns io.EOF or a *TunnelError then), or with its connection (the
	// error then wraps ErrClosed too).
	ErrTunnelClosed = errors.New("sdk: tunnel closed")

	// ErrNoMembers is returned at once by Request, Survey, Push, TryPush
	// and Tunnel (wrapped) when the cluster has no member anywhere in the
	// network, as far as the daemon knows. Only v1.1 sessions get it; a
	// daemon that predates v1.1 lets the call time out instead.
	ErrNoMembers = errors.New("sdk: cluster has no members")

	// ErrBusy is returned by TryPush when every member's queue is full.
	ErrBusy = errors.New("sdk: every member is busy")

	// ErrUnsupported is returned by the calls of protocol v1.1 (Survey,
	// Push, TryPush) on a connection to a daemon that predates it.
	ErrUnsupported = errors.New("sdk: the daemon does not support protocol v1.1")
)

// timeoutError is the type of ErrTimeout.
type timeoutError struct{}

func (*timeoutError) Error() string   { return "sdk: timed out" }
func (*timeoutError) Timeout() bool   { return true }
func (*timeoutError) Temporary() bool { return true }

// Is makes errors.Is(ErrTimeout, context.DeadlineExceeded) hold, so callers
// that only know contexts recognise an expired request.
func (*timeoutError) Is(target error) bool { return target == context.DeadlineExceeded }

// DeniedError is returned by Connect and Register when the daemon refuses the
// connection with DENY, for example because the protocol version is not
// supported. It matches ErrDenied.
type DeniedError struct {
	// Reason is the daemon's explanation, as sent.
	Reason string
}

// Error returns the reason with the SDK prefix.
func (e *DeniedError) Error() string { return "sdk: connection denied: " + e.Reason }

// Is reports whether target is ErrDenied.
func (e *DeniedError) Is(target error) bool { return target == ErrDenied }

// RemoteError is returned by Request when the service answered with a fault:
// its handler failed, panicked or was overloaded. Get it with errors.As.
type RemoteError struct {
	// Fault is the service's description of the failure, never empty.
	Fault string
}

// Error returns the fault with the SDK prefix.
func (e *RemoteError) Error() string { return "sdk: remote fault: " + e.Fault }

// Is reports whether target is ErrOverloaded and the fault is its text.
func (e *RemoteError) Is(target error) bool {
	return target == ErrOverloaded && e.Fault == ErrOverloaded.Error()
}

// TunnelError is returned by Tunnel.Recv, once the buffered messages are
// drained, when the daemon closed the tunnel with a reason: the far end
// failed or its connection was lost. It matches ErrTunnelClosed. A graceful
// close by the far end gives io.EOF instead.
type TunnelError struct {
	// Reason is the daemon's explanation, as sent, never empty.
	Reason string
}

// Error returns the reason with the SDK prefix.
func (e *TunnelError) Error() string { return "sdk: tunnel closed by the daemon: " + e.Reason }

// Is reports whether target is ErrTunnelClosed.
func (e *TunnelError) Is(target error) bool { return target == ErrTunnelClosed }

// ctxError returns the error for a call whose context ended: ErrTimeout for
// a passed deadline, ctx.Err() otherwise.
func ctxError(ctx context.Context) error {
	err := ctx.Err()
	if errors.Is(err, context.DeadlineExceeded) {
		return ErrTimeout
	}
	return err
}
