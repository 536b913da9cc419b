package control

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/sluicegw/sluice/internal/state"
)

// Error is an API error with its HTTP status and stable code. Handlers
// return it (or any error wrapping one); writeError is the one place that
// renders errors to the wire.
type Error struct {
	Status  int
	Code    string
	Message string
	Err     error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return e.Code + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with a formatted message.
func Errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// Common errors.
var (
	errUnauthorized = &Error{Status: http.StatusUnauthorized, Code: "unauthorized", Message: "missing or invalid bearer token"}
	errNotFound     = &Error{Status: http.StatusNotFound, Code: "not_found", Message: "no such resource"}
)

// BadRequest returns a 400 error that wraps err.
func BadRequest(err error) *Error {
	return &Error{Status: http.StatusBadRequest, Code: "bad_request", Message: err.Error(), Err: err}
}

// NotFound returns a 404 error with a message.
func NotFound(format string, args ...any) *Error {
	return Errorf(http.StatusNotFound, "not_found", format, args...)
}

// Conflict returns a 409 error with a message.
func Conflict(format string, args ...any) *Error {
	return Errorf(http.StatusConflict, "conflict", format, args...)
}

// classify maps any handler error to an *Error: API errors as they are,
// state-database classes to 404/409, everything else to 500.
func classify(err error) *Error {
	var ae *Error
	if errors.As(err, &ae) {
		return ae
	}
	switch {
	case errors.Is(err, state.ErrNotFound):
		return &Error{Status: http.StatusNotFound, Code: "not_found", Message: err.Error(), Err: err}
	case errors.Is(err, state.ErrExists):
		return &Error{Status: http.StatusConflict, Code: "conflict", Message: err.Error(), Err: err}
	}
	return &Error{Status: http.StatusInternalServerError, Code: "internal", Message: "internal error; see the daemon log for the request id", Err: err}
}
