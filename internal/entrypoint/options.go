package entrypoint

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
)

// options are the settings of one run: flags first, then VOLPERM_*
// environment variables, so that an image can set
// ENTRYPOINT ["volperm","exec","--"] and a user tune it with docker run -e.
type options struct {
	user      string   // the image account: NAME or UID, optionally :GROUP
	match     string   // a path whose owner gives the target ids
	uid, gid  int64    // explicit target ids; -1 when not given
	socket    string   // the docker socket: a path, "auto" or "none"
	chown     []string // further trees to re-own from the old ids
	allowRoot bool     // running the command as uid 0 is intended
	verbose   bool
	cmd       []string
	help      bool
}

// usage is printed for -h and --help.
const usage = `Usage: volperm exec [OPTIONS] -- COMMAND [ARG...]

Run as root at container start: give the image's user the ids of a
bind-mounted path (or the ids given), make the docker socket's group
reachable, drop every privilege and exec COMMAND in volperm's place.

Options (each also as an environment variable):
  --user NAME|UID[:GROUP]   the image account to run as         VOLPERM_USER
  --match PATH              take uid and gid from PATH's owner  VOLPERM_MATCH
  --uid N, --gid N          take these ids instead              VOLPERM_UID, VOLPERM_GID
  --docker-socket PATH|auto|none
                            the socket whose group the user joins
                            (auto: /var/run/docker.sock if mounted)
                                                                VOLPERM_DOCKER_SOCKET
  --chown PATH              also re-own what the old ids owned under PATH
                            (repeatable; the user's home always is)
                                                                VOLPERM_CHOWN (colon-separated)
  --allow-root              allow the command to run as uid 0    VOLPERM_ALLOW_ROOT=1
  -v, --verbose             say what was checked, even when nothing changed
                                                                VOLPERM_VERBOSE=1

Exit status before COMMAND runs: 125 volperm failed, 126 COMMAND cannot be
executed, 127 COMMAND not found. After that, COMMAND's own.
`

// usageError is a mistake in the command line or the environment.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(s string) error { *l = append(*l, s); return nil }

// idFlag is a uid or gid flag.
type idFlag struct{ v *int64 }

func (f idFlag) String() string {
	if f.v == nil || *f.v < 0 {
		return ""
	}
	return strconv.FormatInt(*f.v, 10)
}

func (f idFlag) Set(s string) error {
	n, err := parseID(s)
	if err != nil {
		return err
	}
	*f.v = int64(n)
	return nil
}

// maxID is the highest id a process can have: (uid_t)-1 means "unchanged"
// to the set*id calls.
const maxID = 1<<32 - 2

func parseID(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n > maxID {
		return 0, fmt.Errorf("%q is not an id (0-%d)", s, maxID)
	}
	return uint32(n), nil
}

// parseOptions reads args (after "exec") and the environment.
func parseOptions(args []string, getenv func(string) string) (options, error) {
	o := options{uid: -1, gid: -1, socket: "auto"}
	if err := o.fromEnv(getenv); err != nil {
		return o, err
	}
	fs := flag.NewFlagSet("volperm exec", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var chown stringList
	fs.StringVar(&o.user, "user", o.user, "")
	fs.StringVar(&o.match, "match", o.match, "")
	fs.Var(idFlag{&o.uid}, "uid", "")
	fs.Var(idFlag{&o.gid}, "gid", "")
	fs.StringVar(&o.socket, "docker-socket", o.socket, "")
	fs.Var(&chown, "chown", "")
	fs.BoolVar(&o.allowRoot, "allow-root", o.allowRoot, "")
	fs.BoolVar(&o.verbose, "verbose", o.verbose, "")
	fs.BoolVar(&o.verbose, "v", o.verbose, "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			o.help = true
			return o, nil
		}
		return o, &usageError{err.Error()}
	}
	if len(chown) > 0 {
		o.chown = chown // flags replace the environment's list
	}
	o.cmd = fs.Args()
	switch {
	case len(o.cmd) == 0:
		return o, &usageError{"no command: volperm exec [OPTIONS] -- COMMAND [ARG...]"}
	case o.user == "":
		return o, &usageError{"no user: give --user NAME (or VOLPERM_USER), the image account the command runs as"}
	case o.match != "" && o.uid >= 0 && o.gid >= 0:
		return o, &usageError{"--match has nothing to decide: --uid and --gid are both given"}
	}
	for _, p := range append([]string{o.match}, o.chown...) {
		if p != "" && !strings.HasPrefix(p, "/") {
			return o, &usageError{fmt.Sprintf("%q: paths must be absolute", p)}
		}
	}
	for i, c := range o.chown {
		o.chown[i] = filepath.Clean(c)
	}
	if o.socket != "auto" && o.socket != "none" && !strings.HasPrefix(o.socket, "/") {
		return o, &usageError{fmt.Sprintf("--docker-socket %q: want an absolute path, auto or none", o.socket)}
	}
	return o, nil
}

func (o *options) fromEnv(getenv func(string) string) error {
	if v := getenv("VOLPERM_USER"); v != "" {
		o.user = v
	}
	o.match = getenv("VOLPERM_MATCH")
	for _, e := range []struct {
		name string
		v    *int64
	}{{"VOLPERM_UID", &o.uid}, {"VOLPERM_GID", &o.gid}} {
		if s := getenv(e.name); s != "" {
			n, err := parseID(s)
			if err != nil {
				return &usageError{fmt.Sprintf("%s: %v", e.name, err)}
			}
			*e.v = int64(n)
		}
	}
	if v := getenv("VOLPERM_DOCKER_SOCKET"); v != "" {
		o.socket = v
	}
	if v := getenv("VOLPERM_CHOWN"); v != "" {
		for _, p := range strings.Split(v, ":") {
			if p != "" {
				o.chown = append(o.chown, p)
			}
		}
	}
	for _, b := range []struct {
		name string
		v    *bool
	}{{"VOLPERM_ALLOW_ROOT", &o.allowRoot}, {"VOLPERM_VERBOSE", &o.verbose}} {
		if s := getenv(b.name); s != "" {
			v, err := strconv.ParseBool(s)
			if err != nil {
				return &usageError{fmt.Sprintf("%s=%q: want 1, 0, true or false", b.name, s)}
			}
			*b.v = v
		}
	}
	return nil
}
