package entrypoint

import (
	"testing"

	"github.com/volperm/volperm/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }
