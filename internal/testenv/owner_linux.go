package testenv

import (
	"os"
	"syscall"
)

func ownerOf(fi os.FileInfo) Owner {
	st := fi.Sys().(*syscall.Stat_t)
	return Owner{st.Uid, st.Gid}
}
