// Package remap answers "which userns-remap does this daemon use, and what
// does it map?": it parses --userns-remap values as dockerd does, resolves
// them against the host's passwd and group files, lays out the subordinate
// ranges as the daemon of a given version would, and weighs the sources that
// can say which remap is in force (the daemon itself, daemon.json, the
// dockerd command line).
package remap

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/volperm/volperm/internal/identity"
	"github.com/volperm/volperm/internal/idmap"
)

// DefaultUser is what "default" stands for (daemon/daemon_unix.go).
const DefaultUser = "dockremap"

// Spec is a parsed --userns-remap value.
type Spec struct {
	Raw      string
	User     string // name or decimal uid; "dockremap" for "default"
	Group    string // name or decimal gid; "" when not given
	Default  bool   // the value was "default"
	userNum  bool
	groupNum bool
}

// ParseSpec parses a --userns-remap value: default, USER, USER:GROUP, UID or
// UID:GID (daemon/daemon_unix.go parseRemappedRoot).
func ParseSpec(s string) (Spec, error) {
	parts := strings.Split(s, ":")
	if len(parts) > 2 {
		//lint:ignore ST1005 dockerd's exact words, which users paste into searches
		return Spec{}, fmt.Errorf("Invalid user/group specification in --userns-remap: %q", s)
	}
	if parts[0] == "" {
		return Spec{}, fmt.Errorf("userns-remap %q: empty user", s)
	}
	sp := Spec{Raw: s, User: parts[0]}
	if _, err := strconv.ParseInt(parts[0], 10, 32); err == nil {
		sp.userNum = true
	} else if parts[0] == "default" {
		sp.User, sp.Default = DefaultUser, true
	}
	if len(parts) == 2 {
		if parts[1] == "" {
			return Spec{}, fmt.Errorf("userns-remap %q: empty group", s)
		}
		sp.Group = parts[1]
		if _, err := strconv.ParseInt(parts[1], 10, 32); err == nil {
			sp.groupNum = true
		}
	}
	return sp, nil
}

// Account is a resolved remap user and group.
type Account struct {
	User  string
	UID   uint32
	Group string
	GID   uint32
}

// ErrRootRemap is dockerd's answer to remapping root onto itself: it warns
// and runs without user namespaces.
//
//lint:ignore ST1005 dockerd's exact words
var ErrRootRemap = errors.New("User namespaces: root cannot be remapped with itself; user namespaces are OFF")

// MissingUserError means the daemon's lookup of the remap user or group
// fails and it will not start. Msg is the daemon's own text.
type MissingUserError struct {
	Msg string
	Fix string
}

func (e *MissingUserError) Error() string {
	return fmt.Sprintf("dockerd will not start: %s; %s", e.Msg, e.Fix)
}

// DaemonMessage is what dockerd prints before exiting.
func (e *MissingUserError) DaemonMessage() string { return e.Msg }

// Refused is a setup dockerd refuses to start with: Msg is the line it
// prints before exiting, which systemd hides behind "Failed to start Docker
// Application Container Engine".
type Refused struct {
	Msg   string
	Fix   string
	Cause error // volperm's own reading, with file:line:col, when there is one
}

func (e *Refused) Error() string { return "dockerd will not start: " + e.Msg }

// DaemonMessage is what dockerd prints.
func (e *Refused) DaemonMessage() string { return e.Msg }

// Resolve looks the spec up in the host's passwd and group entries as dockerd
// does. For "default" with no dockremap user yet, it returns the account
// dockerd will create (UID and GID unknown, zero) and ok=false.
func (sp Spec) Resolve(users identity.Users, groups identity.Groups) (acct Account, exists bool, err error) {
	var u identity.User
	var found bool
	if sp.userNum {
		id, _ := strconv.ParseUint(sp.User, 10, 32)
		if u, found = users.ByUID(uint32(id)); !found {
			return Account{}, false, &MissingUserError{
				Msg: fmt.Sprintf("Uid %d has no entry in /etc/passwd: getent unable to find entry %q in passwd database", id, sp.User),
				Fix: "create the user (useradd -r -M -s /usr/sbin/nologin NAME) or name an existing one",
			}
		}
	} else if u, found = users.ByName(sp.User); !found {
		if sp.Default {
			return Account{User: DefaultUser, Group: DefaultUser}, false, nil
		}
		return Account{}, false, &MissingUserError{
			Msg: fmt.Sprintf("Error during uid lookup for %q: getent unable to find entry %q in passwd database", sp.User, sp.User),
			Fix: fmt.Sprintf("create it first (useradd -r -M -s /usr/sbin/nologin %s) or use \"default\" to let dockerd create dockremap", sp.User),
		}
	}
	if u.UID == 0 {
		return Account{}, true, ErrRootRemap
	}
	acct = Account{User: u.Name, UID: u.UID}
	var g identity.Group
	switch {
	case sp.Group == "" && sp.userNum:
		if g, found = groups.ByGID(u.UID); !found {
			return Account{}, true, &MissingUserError{
				Msg: fmt.Sprintf("Gid %d has no entry in /etc/group: getent unable to find entry %q in group database", u.UID, sp.User),
				Fix: fmt.Sprintf("create a group with gid %d or give the group explicitly (--userns-remap=%s:GROUP)", u.UID, sp.User),
			}
		}
	case sp.Group == "":
		if g, found = groups.ByName(u.Name); !found {
			return Account{}, true, &MissingUserError{
				Msg: fmt.Sprintf("Error during gid lookup for %q: getent unable to find entry %q in group database", u.Name, u.Name),
				Fix: fmt.Sprintf("create the group (groupadd -r %s) or give one explicitly (--userns-remap=%s:GROUP)", u.Name, u.Name),
			}
		}
	case sp.groupNum:
		id, _ := strconv.ParseUint(sp.Group, 10, 32)
		if g, found = groups.ByGID(uint32(id)); !found {
			return Account{}, true, &MissingUserError{
				Msg: fmt.Sprintf("Gid %d has no entry in /etc/passwd: getent unable to find entry %q in group database", id, sp.Group),
				Fix: "create the group or name an existing one",
			}
		}
	default:
		if g, found = groups.ByName(sp.Group); !found {
			return Account{}, true, &MissingUserError{
				Msg: fmt.Sprintf("Error during groupname lookup for %q: getent unable to find entry %q in group database", sp.Group, sp.Group),
				Fix: fmt.Sprintf("create the group (groupadd -r %s) or name an existing one", sp.Group),
			}
		}
	}
	acct.Group, acct.GID = g.Name, g.GID
	return acct, true, nil
}

// Layout builds the mapping dockerd of version v uses for the account from
// the lines of /etc/subuid and /etc/subgid. As in every daemon since 20.10,
// both files are filtered by the remap USER's name or uid; the group only
// names the data-root directory owner and is otherwise cosmetic.
func Layout(acct Account, subuid, subgid []identity.SubID, uidFile, gidFile string, v idmap.Version) (idmap.Mapping, error) {
	u, err := idmap.DockerMap(subuid, uidFile, acct.User, acct.UID, v)
	if err != nil {
		return idmap.Mapping{}, err
	}
	g, err := idmap.DockerMap(subgid, gidFile, acct.User, acct.UID, v)
	if err != nil {
		return idmap.Mapping{}, err
	}
	return idmap.Mapping{UID: u, GID: g}, nil
}
