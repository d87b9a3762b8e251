package cluster

import (
	"errors"
	"fmt"
)

// ErrUnknownOutcome means a write was handed to the leader but its answer
// was lost: leadership was lost while the entry was in flight, or a
// forwarded write timed out or lost its answer after the leader received
// it. The write may or may not have been applied, so it is not retried:
// a second attempt could apply it twice (overwriting a newer write) or
// fail against the first (a create-only compare-and-set would report a
// conflict with the caller's own value). The caller should read the
// current state before retrying. It also matches ErrUnavailable, so the
// admin API answers 503 with Retry-After.
var ErrUnknownOutcome = fmt.Errorf("%w: the write may or may not have been applied; read the current state before retrying it", ErrUnavailable)

// unknownOutcome returns err marked as ErrUnknownOutcome (once).
func unknownOutcome(err error) error {
	if errors.Is(err, ErrUnknownOutcome) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrUnknownOutcome, err)
}

// outcomeUnknown reports whether err leaves a write's outcome unknown: it
// is ErrUnknownOutcome, or the *NotLeaderError of a leadership lost while
// the write was in flight.
func outcomeUnknown(err error) bool {
	var nl *NotLeaderError
	return errors.Is(err, ErrUnknownOutcome) || errors.As(err, &nl) && nl.Lost
}

// noAnswerError is a peer call that got no HTTP answer: the connection
// failed or the call's context ended before a response came.
type noAnswerError struct{ err error }

func (e *noAnswerError) Error() string { return e.err.Error() }
func (e *noAnswerError) Unwrap() error { return e.err }
