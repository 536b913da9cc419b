// Command sluicectl is the command-line client of Sluice's control API.
//
// It finds the API from --endpoint, SLUICE_ENDPOINT, or the control.json a
// running daemon writes in its data directory (--data, default
// ./sluice-data), and the token from --token, SLUICE_TOKEN, or the data
// directory's admin.token. Every command prints a table, or stable JSON with
// --output json.
//
// Exit codes: 0 success, 1 the API refused the request, 2 usage error,
// 3 the API could not be reached, 4 authentication or permission failure,
// 5 not found.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/sluicegw/sluice/control/client"
)

// Exit codes.
const (
	exitOK          = 0
	exitAPI         = 1
	exitUsage       = 2
	exitUnreachable = 3
	exitAuth        = 4
	exitNotFound    = 5
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one sluicectl command line and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCommand(stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(stderr, "sluicectl: %v\n", err)
	return exitCode(err)
}

func exitCode(err error) int {
	var ue *usageError
	var ae *client.APIError
	switch {
	case errors.As(err, &ue):
		return exitUsage
	case errors.Is(err, client.ErrUnreachable):
		return exitUnreachable
	case errors.As(err, &ae):
		switch ae.Status {
		case http.StatusUnauthorized, http.StatusForbidden:
			return exitAuth
		case http.StatusNotFound:
			return exitNotFound
		}
		return exitAPI
	}
	return exitAPI
}

// usageError marks errors in how the command was called.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }
