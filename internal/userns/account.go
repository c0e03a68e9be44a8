package userns

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"

	"github.com/volperm/volperm/internal/identity"
)

// planAccount plans the remap user as dockerd creates dockremap: a system
// account with no home and /bin/false as its shell, with a group of its
// own (daemon/internal/usergroup/add_linux.go). On a live system that is
// useradd's job (it locks the files and keeps /etc/shadow); under a root
// directory the lines are added to its passwd, group, shadow and gshadow,
// with the ids useradd -r would choose: the highest free id between
// SYS_UID_MIN and SYS_UID_MAX of its login.defs (100 and 999 by default),
// the same for the group when that id is free there too.
func (p *Plan) planAccount(h *Host, ownGroup bool) error {
	if h.Sys.Live() {
		p.UserAdd = []string{"useradd", "--system", "--no-create-home", "--shell", "/bin/false",
			// Subordinate ranges are this plan's to write.
			"-K", "SUB_UID_COUNT=0", "-K", "SUB_GID_COUNT=0"}
		if ownGroup {
			p.UserAdd = append(p.UserAdd, "--gid", p.User)
		} else {
			p.UserAdd = append(p.UserAdd, "--user-group")
		}
		p.UserAdd = append(p.UserAdd, p.User)
		p.Notes = append(p.Notes, fmt.Sprintf("user %s is created with %s; useradd chooses its uid", p.User, strings.Join(p.UserAdd, " ")))
		return nil
	}
	defs := loginDefs(h)
	usedUID, usedGID := map[uint32]bool{}, map[uint32]bool{}
	for _, u := range h.Users {
		usedUID[u.UID] = true
	}
	for _, g := range h.Groups {
		usedGID[g.GID] = true
	}
	var gid uint32
	if g, ok := h.Groups.ByName(p.User); ok {
		gid = g.GID
	}
	var uid uint32
	found := false
	for id := defs["SYS_UID_MAX"]; id >= defs["SYS_UID_MIN"] && id > 0; id-- {
		if !usedUID[id] && (ownGroup || !usedGID[id]) {
			uid, found = id, true
			break
		}
	}
	if !found {
		return fmt.Errorf("no free system uid between %d and %d in %s", defs["SYS_UID_MIN"], defs["SYS_UID_MAX"], h.Passwd.Path)
	}
	if !ownGroup {
		gid = uid
		if gid < defs["SYS_GID_MIN"] || gid > defs["SYS_GID_MAX"] {
			return fmt.Errorf("no free system gid between %d and %d in %s", defs["SYS_GID_MIN"], defs["SYS_GID_MAX"], h.Group.Path)
		}
	}
	p.UID = &uid
	why := fmt.Sprintf("create the system account %s (uid %d, gid %d), as dockerd creates dockremap", p.User, uid, gid)
	p.add(h.Passwd, appendLine(h.Passwd.Data, fmt.Sprintf("%s:x:%d:%d::/nonexistent:/bin/false", p.User, uid, gid)), why)
	if !ownGroup {
		p.add(h.Group, appendLine(h.Group.Data, fmt.Sprintf("%s:x:%d:", p.User, gid)), why)
	}
	if h.Shadow.Exists {
		p.add(h.Shadow, appendLine(h.Shadow.Data, p.User+":!:::::::"), why+": locked, no password")
	}
	if h.GShadow.Exists && !ownGroup {
		p.add(h.GShadow, appendLine(h.GShadow.Data, p.User+":!::"), why)
	}
	return nil
}

// appendLine adds a line to a text file, ending the last line first.
func appendLine(data []byte, line string) []byte {
	out := bytes.Clone(data)
	if len(out) > 0 && out[len(out)-1] != '\n' {
		out = append(out, '\n')
	}
	return append(out, line+"\n"...)
}

// loginDefs reads the system id bounds of login.defs(5), with shadow's
// defaults.
func loginDefs(h *Host) map[string]uint32 {
	defs := map[string]uint32{"SYS_UID_MIN": 100, "SYS_UID_MAX": 999, "SYS_GID_MIN": 100, "SYS_GID_MAX": 999}
	f, err := readFile(h.Sys, "/etc/login.defs")
	if err != nil || !f.Exists {
		return defs
	}
	sc := bufio.NewScanner(bytes.NewReader(f.Data))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) != 2 {
			continue
		}
		if _, known := defs[fields[0]]; known {
			if n, err := identity.ParseID(fields[1]); err == nil {
				defs[fields[0]] = n
			}
		}
	}
	return defs
}

// uidString is a uid as /etc/subuid keys it.
func uidString(id uint32) string { return strconv.FormatUint(uint64(id), 10) }
