// Package acl encodes and decodes POSIX ACLs in the form the kernel keeps
// them in the system.posix_acl_access and system.posix_acl_default extended
// attributes (include/uapi/linux/posix_acl_xattr.h), and reads and writes
// them on files without following symlinks. It needs no libacl and no cgo.
//
// It does not evaluate access (see package access) and knows nothing of
// user or group names.
package acl

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Tag is an ACL entry type.
type Tag uint16

// Entry tags, in the order the kernel requires them.
const (
	UserObj  Tag = 0x01
	User     Tag = 0x02
	GroupObj Tag = 0x04
	Group    Tag = 0x08
	Mask     Tag = 0x10
	Other    Tag = 0x20
)

// Perm bits.
const (
	Read    uint16 = 4
	Write   uint16 = 2
	Execute uint16 = 1
)

// UndefinedID is the id carried by entries that have none.
const UndefinedID = 0xFFFFFFFF

const (
	version   = 2
	headerLen = 4
	entryLen  = 8
)

// Xattr names.
const (
	AccessXattr  = "system.posix_acl_access"
	DefaultXattr = "system.posix_acl_default"
)

// Entry is one ACL entry. ID is meaningful only for User and Group.
type Entry struct {
	Tag  Tag
	Perm uint16
	ID   uint32
}

// ACL is a list of entries.
type ACL []Entry

// Decode parses xattr bytes and validates them as the kernel's
// posix_acl_valid does.
func Decode(b []byte) (ACL, error) {
	if len(b) < headerLen || (len(b)-headerLen)%entryLen != 0 {
		return nil, fmt.Errorf("ACL xattr of %d bytes: want a 4-byte header and 8-byte entries", len(b))
	}
	if v := binary.LittleEndian.Uint32(b); v != version {
		return nil, fmt.Errorf("ACL xattr version %d, want %d", v, version)
	}
	a := make(ACL, 0, (len(b)-headerLen)/entryLen)
	for off := headerLen; off < len(b); off += entryLen {
		e := Entry{
			Tag:  Tag(binary.LittleEndian.Uint16(b[off:])),
			Perm: binary.LittleEndian.Uint16(b[off+2:]),
			ID:   binary.LittleEndian.Uint32(b[off+4:]),
		}
		if e.Tag != User && e.Tag != Group {
			e.ID = UndefinedID
		}
		a = append(a, e)
	}
	if err := a.Valid(); err != nil {
		return nil, err
	}
	return a, nil
}

// Encode renders the ACL as xattr bytes, entries sorted as the kernel
// requires.
func (a ACL) Encode() []byte {
	s := a.Sorted()
	b := make([]byte, headerLen+entryLen*len(s))
	binary.LittleEndian.PutUint32(b, version)
	for i, e := range s {
		off := headerLen + i*entryLen
		id := e.ID
		if e.Tag != User && e.Tag != Group {
			id = UndefinedID
		}
		binary.LittleEndian.PutUint16(b[off:], uint16(e.Tag))
		binary.LittleEndian.PutUint16(b[off+2:], e.Perm)
		binary.LittleEndian.PutUint32(b[off+4:], id)
	}
	return b
}

// Sorted returns a copy in kernel order: by tag, then by id.
func (a ACL) Sorted() ACL {
	s := slices.Clone(a)
	slices.SortStableFunc(s, func(x, y Entry) int {
		if c := cmp.Compare(x.Tag, y.Tag); c != 0 {
			return c
		}
		return cmp.Compare(x.ID, y.ID)
	})
	return s
}

// Valid checks the rules of the kernel's posix_acl_valid: known tags in
// order, ids strictly increasing within User and Group, exactly one
// UserObj, GroupObj and Other, and a Mask whenever a named entry exists.
func (a ACL) Valid() error {
	var seen [0x21]int
	prevTag, prevID := Tag(0), int64(-1)
	named := false
	for i, e := range a {
		switch e.Tag {
		case UserObj, User, GroupObj, Group, Mask, Other:
		default:
			return fmt.Errorf("ACL entry %d: unknown tag %#x", i+1, uint16(e.Tag))
		}
		if e.Perm&^7 != 0 {
			return fmt.Errorf("ACL entry %d: permission bits %#o beyond rwx", i+1, e.Perm)
		}
		if e.Tag < prevTag {
			return fmt.Errorf("ACL entry %d: %s after %s: entries out of order", i+1, e.Tag, prevTag)
		}
		if e.Tag != prevTag {
			prevID = -1
		}
		if e.Tag == User || e.Tag == Group {
			named = true
			if int64(e.ID) <= prevID {
				return fmt.Errorf("ACL entry %d: %s:%d repeated or out of order", i+1, e.Tag, e.ID)
			}
			prevID = int64(e.ID)
		}
		seen[e.Tag]++
		prevTag = e.Tag
	}
	for _, t := range []Tag{UserObj, GroupObj, Other} {
		if seen[t] != 1 {
			return fmt.Errorf("ACL has %d %s entries, want exactly 1", seen[t], t)
		}
	}
	if seen[Mask] > 1 {
		return errors.New("ACL has more than one mask entry")
	}
	if named && seen[Mask] == 0 {
		return errors.New("ACL has named entries but no mask")
	}
	return nil
}

// Find returns the entry with that tag (and id for User/Group).
func (a ACL) Find(t Tag, id uint32) (Entry, bool) {
	for _, e := range a {
		if e.Tag == t && (t != User && t != Group || e.ID == id) {
			return e, true
		}
	}
	return Entry{}, false
}

// Minimal reports whether the ACL says no more than the mode bits do.
func (a ACL) Minimal() bool {
	for _, e := range a {
		if e.Tag != UserObj && e.Tag != GroupObj && e.Tag != Other {
			return false
		}
	}
	return true
}

// FromMode is the minimal ACL equivalent to the permission bits of mode.
func FromMode(mode uint32) ACL {
	return ACL{
		{Tag: UserObj, Perm: uint16(mode>>6) & 7, ID: UndefinedID},
		{Tag: GroupObj, Perm: uint16(mode>>3) & 7, ID: UndefinedID},
		{Tag: Other, Perm: uint16(mode) & 7, ID: UndefinedID},
	}
}

func (t Tag) String() string {
	switch t {
	case UserObj:
		return "user::"
	case User:
		return "user"
	case GroupObj:
		return "group::"
	case Group:
		return "group"
	case Mask:
		return "mask"
	case Other:
		return "other"
	}
	return fmt.Sprintf("tag(%#x)", uint16(t))
}

// PermString renders perm bits as getfacl does ("rw-").
func PermString(p uint16) string {
	b := []byte("---")
	if p&Read != 0 {
		b[0] = 'r'
	}
	if p&Write != 0 {
		b[1] = 'w'
	}
	if p&Execute != 0 {
		b[2] = 'x'
	}
	return string(b)
}

// String renders the ACL in getfacl's numeric short form
// ("user::rwx,user:1000:rw-,group::r-x,mask::rwx,other::r-x").
func (a ACL) String() string {
	parts := make([]string, 0, len(a))
	for _, e := range a.Sorted() {
		switch e.Tag {
		case User, Group:
			parts = append(parts, fmt.Sprintf("%s:%d:%s", e.Tag, e.ID, PermString(e.Perm)))
		case Mask:
			parts = append(parts, "mask::"+PermString(e.Perm))
		case Other:
			parts = append(parts, "other::"+PermString(e.Perm))
		default:
			parts = append(parts, e.Tag.String()+PermString(e.Perm))
		}
	}
	return strings.Join(parts, ",")
}
