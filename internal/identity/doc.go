// Package identity parses the files that say who is who on a Linux host or in
// an image: /etc/passwd, /etc/group, /etc/subuid and /etc/subgid.
//
// The parsers are strict: a malformed line is an error that names the file,
// the line and the field, instead of the silent zero that
// github.com/moby/sys/user (and so dockerd) produces. Where the daemon is
// lenient, the error says what the daemon will make of the line, so a user
// learns both that the line is wrong and how Docker reads it today.
//
// The package does no I/O beyond the io.Reader it is given, except for the
// thin *File wrappers, and never consults NSS, LDAP or getent.
package identity
