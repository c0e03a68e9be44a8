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
}

func remapWillNotStart(in *Input) []Finding {
	s := in.Host.Remap
	if s == nil || s.Spec == "" || s.Err == nil {
		return nil
	}
	f := Finding{Severity: Error, Path: s.Source}
	var nr *idmap.NoRangesError
	var mu *remap.MissingUserError
	switch {
	case errors.As(s.Err, &nr):
		f.Message = fmt.Sprintf("userns-remap=%s (%s) but %s has no line for %s: dockerd %s refuses to start, printing %q.",
			s.Spec, s.Source, nr.File, nr.User, nr.Version, nr.DaemonMessage())
		f.Fix = []Fix{fixOf(fmt.Sprintf("give %s a free range of 65536 ids in %s", nr.User, nr.File),
			plan.AppendLine{File: nr.File, Line: nr.Suggest})}
	case errors.As(s.Err, &mu):
		f.Message = fmt.Sprintf("userns-remap=%s (%s): dockerd refuses to start, printing %q.", s.Spec, s.Source, mu.Msg)
		f.Fix = []Fix{{Description: mu.Fix}}
	default:
		f.Message = fmt.Sprintf("userns-remap=%s (%s): %v", s.Spec, s.Source, s.Err)
		f.Fix = []Fix{{Description: "correct the line named in the message"}}
	}
	return []Finding{f}
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
			out = append(out, coveredAccounts(s, file.path, a, file.gid)...)
		}
	}
	return out
}

func owns(s *RemapSetup, l identity.SubID) bool {
	return l.Owner == s.Account.User || l.Owner == strconv.FormatUint(uint64(s.Account.UID), 10)
}

// coveredAccounts reports host accounts inside a subordinate range.
func coveredAccounts(s *RemapSetup, file string, l identity.SubID, gid bool) []Finding {
	if gid {
		return nil // groups: the uid check already says it; gids of the docker group are a deliberate choice
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
