package host

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Kernel is what the kernel says about user namespaces.
type Kernel struct {
	// UserNS is the CONFIG_USER_NS setting ("y", "n") or "" when no
	// kernel configuration could be read; ConfigFile says where it was.
	UserNS     string
	ConfigFile string
	// MaxUserNamespaces is /proc/sys/user/max_user_namespaces, -1 when
	// unreadable.
	MaxUserNamespaces int
	// UnprivilegedClone is Debian/Ubuntu's kernel.unprivileged_userns_clone
	// (-1 when the kernel has no such knob). It only restricts
	// unprivileged users: dockerd runs as root, so it matters for rootless
	// setups only.
	UnprivilegedClone int
}

// ReadKernel reads the facts under root ("/" for the running host).
func ReadKernel(root string) Kernel {
	k := Kernel{MaxUserNamespaces: readInt(filepath.Join(root, "proc/sys/user/max_user_namespaces")),
		UnprivilegedClone: readInt(filepath.Join(root, "proc/sys/kernel/unprivileged_userns_clone"))}
	var uts unix.Utsname
	release := ""
	if unix.Uname(&uts) == nil {
		release = unix.ByteSliceToString(uts.Release[:])
	}
	for _, p := range []string{filepath.Join(root, "proc/config.gz"), filepath.Join(root, "boot/config-"+release)} {
		if v, ok := configValue(p, "CONFIG_USER_NS"); ok {
			k.UserNS, k.ConfigFile = v, p
			break
		}
	}
	// Without a readable kernel configuration, the namespace file of the
	// process says the kernel has user namespaces.
	if p := filepath.Join(root, "proc/self/ns/user"); k.UserNS == "" {
		if _, err := os.Stat(p); err == nil {
			k.UserNS, k.ConfigFile = "y", p
		}
	}
	return k
}

func readInt(p string) int {
	data, err := os.ReadFile(p)
	if err != nil {
		return -1
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return -1
	}
	return n
}

// configValue finds KEY in a kernel config (plain or gzip): "y", "m", or
// "n" for "# KEY is not set".
func configValue(path, key string) (string, bool) {
	f, err := os.Open(path)
	if err != nil {
		return "", false
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(path, ".gz") {
		gz, err := gzip.NewReader(f)
		if err != nil {
			return "", false
		}
		defer gz.Close()
		r = gz
	}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, key+"="); ok {
			return v, true
		}
		if line == fmt.Sprintf("# %s is not set", key) {
			return "n", true
		}
	}
	return "", false
}
