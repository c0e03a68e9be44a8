package identity

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// ExecUser is the identity a container process gets: what runc is told to
// setuid/setgid/setgroups to.
type ExecUser struct {
	UID   uint32
	GID   uint32
	SGIDs []uint32 // supplementary groups from /etc/group membership
	Home  string
	Name  string // the passwd entry matched, "" when none
}

// maxExecID is the range moby/sys/user accepts for --user ids.
const maxExecID = 1<<31 - 1

// ErrRange is moby/sys/user's error for an out-of-range numeric id.
var ErrRange = fmt.Errorf("uids and gids must be in range 0-%d", maxExecID)

// ResolveUser resolves a --user / compose `user:` spec against an image's
// passwd and group files exactly as the daemon does at container start
// (moby/sys/user GetExecUser with no defaults): "" is uid 0; a numeric user
// is always a uid, used as-is when no entry matches (gid 0 then); a name
// must exist; an explicit group overrides the primary gid and turns off
// supplementary groups; without one, a matched user name gets every group
// that lists it as a member. users or groups may be nil when the image has
// no such file.
func ResolveUser(spec string, users Users, groups Groups) (ExecUser, error) {
	userArg, groupArg, _ := strings.Cut(spec, ":")
	uidArg, uidErr := strconv.Atoi(userArg)
	gidArg, gidErr := strconv.Atoi(groupArg)

	var u ExecUser
	var matched *User
	for i := range users {
		e := &users[i]
		switch {
		case userArg == "" && e.UID == 0,
			userArg != "" && uidErr == nil && int64(e.UID) == int64(uidArg),
			userArg != "" && uidErr != nil && e.Name == userArg:
			matched = e
		}
		if matched != nil {
			break
		}
	}
	switch {
	case matched != nil:
		u = ExecUser{UID: matched.UID, GID: matched.GID, Home: matched.Home, Name: matched.Name}
	case userArg != "" && uidErr != nil:
		return ExecUser{}, fmt.Errorf("unable to find user %s: no matching entries in passwd file", userArg)
	case userArg != "":
		if uidArg < 0 || uidArg > maxExecID {
			return ExecUser{}, ErrRange
		}
		u.UID = uint32(uidArg)
	}

	if groupArg != "" {
		if g, ok := findGroup(groups, groupArg, gidArg, gidErr == nil); ok {
			u.GID = g.GID
		} else if gidErr != nil {
			return ExecUser{}, fmt.Errorf("unable to find group %s: no matching entries in group file", groupArg)
		} else if gidArg < 0 || gidArg > maxExecID {
			return ExecUser{}, ErrRange
		} else {
			u.GID = uint32(gidArg)
		}
		return u, nil
	}
	if u.Name != "" {
		for _, g := range groups {
			if slices.Contains(g.Members, u.Name) {
				u.SGIDs = append(u.SGIDs, g.GID)
			}
		}
	}
	return u, nil
}

func findGroup(groups Groups, arg string, gid int, numeric bool) (Group, bool) {
	for _, g := range groups {
		if numeric && int64(g.GID) == int64(gid) || !numeric && g.Name == arg {
			return g, true
		}
	}
	return Group{}, false
}

// ErrNoGroup is the daemon's refusal of a --group-add / group_add name that
// the image's /etc/group lacks.
var ErrNoGroup = errors.New("no matching entries in group file")

// AdditionalGroups resolves --group-add / compose group_add entries as
// moby/sys/user GetAdditionalGroups does: names must exist in the image's
// group file, numeric gids are accepted even when absent, duplicates are
// dropped. The error text follows dockerd up to 29.6.1 ("Unable to find
// group", capital U), which is what 20.10 to 29.6 print.
func AdditionalGroups(add []string, groups Groups) ([]uint32, error) {
	var out []uint32
	for _, a := range add {
		a = strings.TrimSpace(a)
		n, err := strconv.ParseInt(a, 10, 64)
		var gid uint32
		if g, ok := findGroup(groups, a, int(n), err == nil); ok {
			gid = g.GID
		} else if err != nil {
			//lint:ignore ST1005 dockerd's exact words
			return nil, fmt.Errorf("Unable to find group %s: %w", a, ErrNoGroup)
		} else if n < 0 || n > maxExecID {
			return nil, ErrRange
		} else {
			gid = uint32(n)
		}
		if !slices.Contains(out, gid) {
			out = append(out, gid)
		}
	}
	return out, nil
}
