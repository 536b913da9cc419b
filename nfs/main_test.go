package nfs

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		runChild() // the server process of TestKill9AfterCommit
		return
	}
	goleak.VerifyTestMain(m)
}
