// Command benchexec measures, inside a container started as root, what an
// entrypoint adds before the command runs. "benchexec drop UID GID CMD..."
// is the plain privilege drop gosu and su-exec do (setgroups, setgid,
// setuid, exec), the baseline volperm exec is compared with; "benchexec
// loop -n N NAME=CMD..." runs each command N times, round-robin so that
// drift hits all alike, and prints each one's mean time and what it adds
// over the first.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: benchexec drop UID GID CMD... | benchexec loop -n N NAME=CMD...")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "drop":
		drop(os.Args[2:])
	case "loop":
		loop(os.Args[2:])
	default:
		fmt.Fprintf(os.Stderr, "benchexec: unknown mode %q\n", os.Args[1])
		os.Exit(2)
	}
}

func drop(args []string) {
	if len(args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: benchexec drop UID GID CMD...")
		os.Exit(2)
	}
	uid, err1 := strconv.Atoi(args[0])
	gid, err2 := strconv.Atoi(args[1])
	if err1 != nil || err2 != nil {
		fmt.Fprintln(os.Stderr, "benchexec drop: bad uid or gid")
		os.Exit(2)
	}
	path, err := exec.LookPath(args[2])
	if err == nil {
		err = syscall.Setgroups([]int{gid})
	}
	if err == nil {
		err = syscall.Setgid(gid)
	}
	if err == nil {
		err = syscall.Setuid(uid)
	}
	if err == nil {
		err = syscall.Exec(path, args[2:], os.Environ())
	}
	fmt.Fprintln(os.Stderr, "benchexec drop:", err)
	os.Exit(125)
}

type variant struct {
	name string
	argv []string
	runs []time.Duration
}

func loop(args []string) {
	fs := flag.NewFlagSet("loop", flag.ExitOnError)
	n := fs.Int("n", 200, "runs of each command")
	fs.Parse(args)
	var vs []*variant
	for _, a := range fs.Args() {
		name, cmd, ok := strings.Cut(a, "=")
		if !ok {
			fmt.Fprintf(os.Stderr, "benchexec loop: %q: want NAME=CMD\n", a)
			os.Exit(2)
		}
		vs = append(vs, &variant{name: name, argv: strings.Fields(cmd)})
	}
	for i := 0; i < *n+5; i++ {
		for _, v := range vs {
			start := time.Now()
			c := exec.Command(v.argv[0], v.argv[1:]...)
			c.Stdout, c.Stderr = os.Stdout, os.Stderr
			if err := c.Run(); err != nil {
				fmt.Fprintf(os.Stderr, "benchexec loop: %s: %v\n", v.name, err)
				os.Exit(1)
			}
			if i >= 5 { // the first runs warm the page cache
				v.runs = append(v.runs, time.Since(start))
			}
		}
	}
	base := median(vs[0].runs)
	fmt.Printf("%-28s %10s %10s %8s\n", "command (median of "+strconv.Itoa(*n)+")", "time", "added", "ratio")
	for _, v := range vs {
		m := median(v.runs)
		fmt.Printf("%-28s %8.2fms %8.2fms %7.2fx\n", v.name, ms(m), ms(m-base), float64(m)/float64(base))
	}
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
