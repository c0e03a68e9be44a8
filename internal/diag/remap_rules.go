package diag

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/volperm/volperm/internal/host"
	"github.com/volperm/volperm/internal/identity"
	"github.com/volperm/volperm/internal/idmap"
	"github.com/volperm/volperm/internal/plan"
	"github.com/volperm/volperm/internal/remap"
)

// RemapSetup is the configured userns-remap and the host facts that decide
// whether dockerd starts with it.
type RemapSetup struct {
	Spec   string // as configured; "" when remapping is not configured
	Source string // where it is configured
	// Err is why dockerd will refuse to start with it (nil when it will).
	Err     error
	Account remap.Account
	Kernel  host.Kernel
	SubUID  []identity.SubID
	SubGID  []identity.SubID
	Files   remap.Files
	Users   identity.Users
	// Mapping is the layout dockerd will use, when it can be laid out.
	Mapping *idmap.Mapping
	// RootDir is dockerd's predicted Docker Root Dir under the remap.
	RootDir string
	// Running is what the running daemon says, when it is the daemon
	// this configuration is for.
	Running *remap.Daemon
}

// errs are the problems joined in Err.
func (s *RemapSetup) errs() []error {
	if s.Err == nil {
		return nil
	}
	if j, ok := s.Err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{s.Err}
}

func remapWillNotStart(in *Input) []Finding {
	s := in.Host.Remap
	if s == nil || s.Spec == "" {
		return nil
	}
	var out []Finding
	for _, err := range s.errs() {
		f := Finding{Severity: Error, Path: s.Source}
		var nr *idmap.NoRangesError
		var mu *remap.MissingUserError
		var rf *remap.Refused
		switch {
		case errors.As(err, &nr):
			f.Message = fmt.Sprintf("userns-remap=%s (%s) but %s has no line for %s: dockerd %s refuses to start, printing %q.",
				s.Spec, s.Source, nr.File, nr.User, nr.Version, nr.DaemonMessage())
			f.Fix = []Fix{fixOf(fmt.Sprintf("give %s a free range of 65536 ids in %s", nr.User, nr.File),
				plan.AppendLine{File: nr.File, Line: nr.Suggest})}
		case errors.As(err, &mu):
			f.Message = fmt.Sprintf("userns-remap=%s (%s): dockerd refuses to start, printing %q.", s.Spec, s.Source, mu.Msg)
			f.Fix = []Fix{{Description: mu.Fix}}
		case errors.As(err, &rf):
			f.Message = fmt.Sprintf("userns-remap=%s (%s): dockerd refuses to start, printing %q.", s.Spec, s.Source, rf.Msg)
			if rf.Cause != nil {
				f.Message += " " + rf.Cause.Error()
			}
			f.Fix = []Fix{{Description: rf.Fix}}
		default:
			f.Message = fmt.Sprintf("userns-remap=%s (%s): %v", s.Spec, s.Source, err)
			f.Fix = []Fix{{Description: "correct the line named in the message"}}
		}
		out = append(out, f)
	}
	return out
}

// Refuses reports whether err, or one of the errors joined in it, is one
// dockerd refuses to start with (it carries the daemon's words).
func Refuses(err error) bool {
	var m interface{ DaemonMessage() string }
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			if Refuses(e) {
				return true
			}
		}
		return false
	}
	return errors.As(err, &m)
}

func usernsUnavailable(in *Input) []Finding {
	s := in.Host.Remap
	if s == nil || s.Spec == "" {
		return nil
	}
	var out []Finding
	if s.Kernel.UserNS == "n" {
		out = append(out, Finding{Severity: Error, Path: s.Kernel.ConfigFile,
			Message: fmt.Sprintf("userns-remap is configured (%s) but the kernel is built without CONFIG_USER_NS (%s): remapped containers fail with \"USER namespaces aren't enabled in the kernel\".", s.Source, s.Kernel.ConfigFile),
			Fix:     []Fix{{Description: "boot a kernel with CONFIG_USER_NS=y, or remove userns-remap from the daemon configuration"}}})
	}
	if s.Kernel.MaxUserNamespaces == 0 {
		out = append(out, Finding{Severity: Error, Path: "/proc/sys/user/max_user_namespaces",
			Message: fmt.Sprintf("userns-remap is configured (%s) but user.max_user_namespaces is 0: no user namespace can be created, so every remapped container fails to start.", s.Source),
			Fix: []Fix{{Description: "allow user namespaces now and at boot",
				Shell: "sysctl -w user.max_user_namespaces=15000 && echo user.max_user_namespaces=15000 > /etc/sysctl.d/90-volperm-userns.conf"}}})
	}
	return out
}

func rangesOverlap(in *Input) []Finding {
	s := in.Host.Remap
	if s == nil {
		return nil
	}
	var out []Finding
	for _, file := range []struct {
		path  string
		lines []identity.SubID
		gid   bool
	}{{s.Files.SubUID, s.SubUID, false}, {s.Files.SubGID, s.SubGID, true}} {
		for i, a := range file.lines {
			for _, b := range file.lines[i+1:] {
				if a.Owner == b.Owner || a.Start > b.Last() || b.Start > a.Last() {
					continue
				}
				sev := Warning
				if s.Account.User != "" && (owns(s, a) || owns(s, b)) {
					sev = Error
				}
				out = append(out, Finding{Severity: sev, Path: file.path, File: file.path, Line: b.Line,
					Message: fmt.Sprintf("%s:%d (%s:%d:%d) and line %d (%s:%d:%d) overlap: both owners can act as host ids %d-%d, so containers of one can read and write what the other's own.",
						file.path, a.Line, a.Owner, a.Start, a.Count, b.Line, b.Owner, b.Start, b.Count, max(a.Start, b.Start), min(a.Last(), b.Last())),
					Fix: []Fix{{Description: fmt.Sprintf("move %s to a free range (volperm map --remap %s shows the result; re-own existing data with volperm shift)", b.Owner, b.Owner)}}})
			}
			out = append(out, coveredAccounts(s, file.path, file.lines, a, file.gid)...)
		}
	}
	return out
}

// firstOf is the line number of the remap user's first line in a file.
func firstOf(s *RemapSetup, lines []identity.SubID) int {
	for _, l := range lines {
		if owns(s, l) {
			return l.Line
		}
	}
	return 0
}

func owns(s *RemapSetup, l identity.SubID) bool {
	return l.Owner == s.Account.User || l.Owner == strconv.FormatUint(uint64(s.Account.UID), 10)
}

// coveredAccounts reports host accounts inside a subordinate range.
func coveredAccounts(s *RemapSetup, file string, lines []identity.SubID, l identity.SubID, gid bool) []Finding {
	if gid {
		return nil // groups: the uid check already says it; gids of the docker group are a deliberate choice
	}
	if l.Count == 1 && s.Account.User != "" && owns(s, l) && firstOf(s, lines) == l.Line {
		// Container root of the remap user mapped to one host account
		// (seed 004, also with a remap user other than that account).
		if u, ok := s.Users.ByUID(l.Start); ok {
			return []Finding{{Severity: Info, Path: file, File: file, Line: l.Line,
				Message: fmt.Sprintf("%s:%d maps container root of %s to the host account %s (%d): the deliberate \"host user is container root\" layout (seeds 003/004); files container root creates in bind mounts belong to %s on the host.",
					file, l.Line, l.Owner, u.Name, u.UID, u.Name),
				Fix: []Fix{{Description: "nothing to do if this is intended"}}}}
		}
	}
	owner, _ := s.Users.ByName(l.Owner)
	var others []string
	ownerCovered := false
	for _, u := range s.Users {
		if u.UID < l.Start || u.UID > l.Last() {
			continue
		}
		if u.Name == l.Owner || strconv.FormatUint(uint64(u.UID), 10) == l.Owner {
			ownerCovered = true
			continue
		}
		others = append(others, fmt.Sprintf("%s (%d)", u.Name, u.UID))
	}
	var out []Finding
	if len(others) > 0 {
		out = append(out, Finding{Severity: Warning, Path: file, File: file, Line: l.Line,
			Message: fmt.Sprintf("%s:%d gives %s the host ids %d-%d, which include the real host account(s) %v: a container id mapped there owns those accounts' files.",
				file, l.Line, l.Owner, l.Start, l.Last(), others),
			Fix: []Fix{{Description: "use a range above every real account (dockerd's own choice starts at 100000)"}}})
	}
	if ownerCovered && l.Start == owner.UID {
		out = append(out, Finding{Severity: Info, Path: file, File: file, Line: l.Line,
			Message: fmt.Sprintf("%s:%d maps a container id to %s's own uid %d: the deliberate \"host user is container root\" layout (seeds 003/004); files that container id creates in bind mounts belong to %s on the host.",
				file, l.Line, l.Owner, owner.UID, l.Owner),
			Fix: []Fix{{Description: "nothing to do if this is intended"}}})
	}
	return out
}

// rangeTooSmall warns about a remap whose ranges leave container ids
// unmapped below 65536.
func rangeTooSmall(in *Input) []Finding {
	s := in.Host.Remap
	if s == nil || s.Spec == "" || s.Mapping == nil {
		return nil
	}
	var out []Finding
	for _, side := range []struct {
		kind, file string
		m          idmap.Map
	}{{"uid", s.Files.SubUID, s.Mapping.UID}, {"gid", s.Files.SubGID, s.Mapping.GID}} {
		n := side.m.Size()
		if n >= idmap.DefaultRangeSize {
			continue
		}
		out = append(out, Finding{Severity: Warning, Path: side.file, File: side.file,
			Message: fmt.Sprintf("userns-remap=%s (%s) maps only container %ss 0-%d (%d ids, from %s): an image with a file owned by a higher %s (nobody is 65534) fails to unpack, and a container process with one cannot start.",
				s.Spec, s.Source, side.kind, n-1, n, side.file, side.kind),
			Fix: []Fix{{Description: fmt.Sprintf("give the remap user at least %d ids (volperm userns plan --user %s shows the edit)", idmap.DefaultRangeSize, s.Account.User)}}})
	}
	return out
}

// remapNotInForce compares the running daemon with its configuration.
func remapNotInForce(in *Input) []Finding {
	s := in.Host.Remap
	if s == nil || s.Running == nil || s.Err != nil {
		return nil
	}
	restart := "restart dockerd (systemctl restart docker, or stop it and start it the same way)"
	f := Finding{Severity: Warning, Path: s.Source}
	switch {
	case s.Spec == "" && s.Running.Userns:
		f.Message = fmt.Sprintf("the running dockerd remaps (Docker Root Dir suffix %s) but nothing configures userns-remap any more: its next start turns remapping off and shows the images of the plain data root again.", s.Running.RootSuffix)
	case s.Spec == "" || s.Mapping == nil:
		return nil
	case !s.Running.Userns:
		f.Message = fmt.Sprintf("userns-remap=%s is configured (%s) but the running dockerd does not remap (no name=userns in its security options): it has not been restarted since. After a restart its Docker Root Dir is %s.", s.Spec, s.Source, s.RootDir)
	case s.Running.RootSuffix != s.Mapping.RootDirSuffix():
		f.Message = fmt.Sprintf("the running dockerd maps container root to %s but the configuration (%s) gives %s: it was set up differently when it started. After a restart its Docker Root Dir is %s.", s.Running.RootSuffix, s.Source, s.Mapping.RootDirSuffix(), s.RootDir)
	default:
		return nil
	}
	f.Fix = []Fix{{Description: restart}}
	return []Finding{f}
}
