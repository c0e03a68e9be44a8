package tree

import (
	"context"
	"time"
)

func progressLoop(ctx context.Context, c *counters, report func(Counts)) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			report(c.snapshot())
		}
	}
}
