// Command benchgen writes the benchmark tree for scripts/bench-shift.sh
// (see benchtree.Generate). The same -seed gives the same tree.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/volperm/volperm/internal/benchtree"
)

func main() {
	root := flag.String("root", "", "directory to create")
	entries := flag.Int("entries", 1000000, "entries to create (about)")
	base := flag.Int("base", 0, "host id of container id 0 (0: files as written by a plain daemon)")
	seed := flag.Uint64("seed", 1, "random seed")
	flag.Parse()
	if *root == "" {
		fmt.Fprintln(os.Stderr, "benchgen: -root is required")
		os.Exit(2)
	}
	if err := benchtree.Generate(*root, *entries, *base, *seed); err != nil {
		fmt.Fprintln(os.Stderr, "benchgen:", err)
		os.Exit(1)
	}
}
