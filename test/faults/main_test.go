package faults

import (
	"os"
	"testing"

	"github.com/clickgate/clickgate/internal/testkit"
)

// TestMain builds cmd/clickgate for the tests that need clickgate as a
// process of its own (its RSS, its file limit).
func TestMain(m *testing.M) { os.Exit(testkit.MainWithClickgate(m)) }
