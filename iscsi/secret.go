package iscsi

import (
	"fmt"
	"log/slog"
)

// Secret is a CHAP secret. It never prints: String, GoString, Format,
// LogValue and MarshalJSON all yield "[redacted]". Use Reveal to get the
// value where it is really needed.
type Secret string

const redacted = "[redacted]"

// Reveal returns the secret's value.
func (s Secret) Reveal() string { return string(s) }

// String returns a redacted placeholder.
func (s Secret) String() string { return redacted }

// GoString returns a redacted placeholder for %#v.
func (s Secret) GoString() string { return redacted }

// Format prints a redacted placeholder for every verb.
func (s Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// LogValue implements slog.LogValuer.
func (s Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalJSON implements json.Marshaler with a redacted string.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// MarshalText implements encoding.TextMarshaler with a redacted string.
func (s Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }
