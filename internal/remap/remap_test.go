package remap

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/volperm/volperm/internal/host"
	"github.com/volperm/volperm/internal/identity"
	"github.com/volperm/volperm/internal/idmap"
)

const passwd = `root:x:0:0:root:/root:/bin/sh
vp:x:990:990::/nonexistent:/usr/sbin/nologin
mino:x:1000:1000::/home/mino:/bin/bash
nogrp:x:991:4242::/:/bin/false
`

const group = `root:x:0:
vp:x:990:
mino:x:1000:
docker:x:982:mino
`

func files(t *testing.T, subuid, subgid string) Files {
	t.Helper()
	d := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(d, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return Files{Passwd: write("passwd", passwd), Group: write("group", group), SubUID: write("subuid", subuid), SubGID: write("subgid", subgid)}
}

var v20 = idmap.Version{Major: 20, Minor: 10, Patch: 24}

func TestParseSpec(t *testing.T) {
	for in, want := range map[string]Spec{
		"default":   {Raw: "default", User: "dockremap", Default: true},
		"vp":        {Raw: "vp", User: "vp"},
		"vp:docker": {Raw: "vp:docker", User: "vp", Group: "docker"},
		"990:982":   {Raw: "990:982", User: "990", Group: "982", userNum: true, groupNum: true},
	} {
		got, err := ParseSpec(in)
		if err != nil || got != want {
			t.Errorf("ParseSpec(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	if _, err := ParseSpec("a:b:c"); err == nil || err.Error() != `Invalid user/group specification in --userns-remap: "a:b:c"` {
		t.Errorf("a:b:c: %v", err)
	}
}

func TestResolveAccount(t *testing.T) {
	users, _ := identity.ParsePasswd(strings.NewReader(passwd), "passwd")
	groups, _ := identity.ParseGroup(strings.NewReader(group), "group")
	for _, tc := range []struct {
		spec    string
		want    Account
		wantErr string
	}{
		{spec: "vp", want: Account{"vp", 990, "vp", 990}},
		{spec: "990", want: Account{"vp", 990, "vp", 990}},
		{spec: "mino:docker", want: Account{"mino", 1000, "docker", 982}},
		{spec: "mino:982", want: Account{"mino", 1000, "docker", 982}},
		{spec: "nosuch", wantErr: `Error during uid lookup for "nosuch": getent unable to find entry "nosuch" in passwd database`},
		{spec: "4321", wantErr: `Uid 4321 has no entry in /etc/passwd`},
		{spec: "nogrp", wantErr: `Error during gid lookup for "nogrp"`},
		{spec: "vp:nosuch", wantErr: `Error during groupname lookup for "nosuch"`},
		{spec: "root", wantErr: "root cannot be remapped with itself"},
	} {
		t.Run(tc.spec, func(t *testing.T) {
			sp, err := ParseSpec(tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			got, _, err := sp.Resolve(users, groups)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestResolveSources(t *testing.T) {
	f := files(t, "vp:100000:65536\nmino:1000:1\nmino:200000:65536\n", "vp:100000:65536\nmino:982:1\nmino:200000:65536\n")
	cfg := &host.DaemonConfig{Path: "/etc/docker/daemon.json", UsernsRemap: "vp"}
	cmdline := &host.Process{PID: 42, Args: []string{"dockerd", "--userns-remap=mino"}}
	for _, tc := range []struct {
		name       string
		src        Sources
		wantRoot   string // RootDirSuffix, "" for no remap
		wantSource string
		wantNote   string
	}{
		{name: "flag wins", src: Sources{Flag: "mino", Config: cfg}, wantRoot: "1000.982", wantSource: "--remap"},
		{name: "no daemon, daemon.json", src: Sources{Config: cfg}, wantRoot: "100000.100000", wantSource: "daemon.json (no daemon answered"},
		{name: "no daemon, nothing", src: Sources{}, wantSource: "no daemon answered and none is configured"},
		{name: "daemon confirms command line", src: Sources{Dockerd: cmdline, Daemon: &Daemon{Userns: true, RootSuffix: "1000.982"}},
			wantRoot: "1000.982", wantSource: "the dockerd command line (pid 42), confirmed"},
		{name: "both set", src: Sources{Config: cfg, Dockerd: cmdline, Daemon: &Daemon{Userns: true, RootSuffix: "1000.982"}},
			wantRoot: "1000.982", wantNote: "both in /etc/docker/daemon.json and on the dockerd command line"},
		{name: "configured but not restarted", src: Sources{Config: cfg, Daemon: &Daemon{}},
			wantSource: "the running daemon, which does not remap", wantNote: "has not been restarted"},
		{name: "remapped, user found by root uid", src: Sources{Daemon: &Daemon{Userns: true, RootSuffix: "100000.100000"}},
			wantRoot: "100000.100000", wantSource: "owner of that range"},
		{name: "subuid changed since start", src: Sources{Config: cfg, Daemon: &Daemon{Userns: true, RootSuffix: "300000.300000"}},
			wantRoot: "100000.100000", wantNote: "changed since the daemon started"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.src.Version = v20
			r, err := Resolve(f, tc.src)
			if err != nil {
				t.Fatal(err)
			}
			gotRoot := ""
			if r.Remapped {
				gotRoot = r.Mapping.RootDirSuffix()
			}
			if gotRoot != tc.wantRoot {
				t.Errorf("root %q, want %q", gotRoot, tc.wantRoot)
			}
			if !strings.Contains(r.Source, tc.wantSource) {
				t.Errorf("source %q, want %q", r.Source, tc.wantSource)
			}
			if tc.wantNote != "" && !strings.Contains(strings.Join(r.Notes, "|"), tc.wantNote) {
				t.Errorf("notes %q, want %q", r.Notes, tc.wantNote)
			}
		})
	}
}

func TestResolveErrors(t *testing.T) {
	f := files(t, "vp:100000:65536\n", "other:100000:65536\n")
	_, err := Resolve(f, Sources{Flag: "vp", Version: v20})
	var nr *idmap.NoRangesError
	if !errors.As(err, &nr) || nr.File != f.SubGID {
		t.Fatalf("error = %v, want no ranges in subgid", err)
	}
	bad := files(t, "vp:100000:65536\nvp:abc:1\n", "")
	if _, err := Resolve(bad, Sources{Flag: "vp", Version: v20}); err == nil || !strings.Contains(err.Error(), "subuid:2: start:") {
		t.Fatalf("error = %v", err)
	}
	def, err := Resolve(files(t, "a:100000:65536\n", ""), Sources{Flag: "default", Version: v20})
	if err != nil || def.Mapping.RootDirSuffix() != "165536.100000" {
		t.Fatalf("default: %v %v", def.Mapping, err)
	}
}

func FuzzParseSpec(f *testing.F) {
	for _, s := range []string{"default", "vp", "vp:docker", "1000:982", "a:b:c", ":"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sp, err := ParseSpec(s)
		if err != nil {
			return
		}
		if sp.User == "" || strings.Count(s, ":") > 1 {
			t.Fatalf("accepted %q as %+v", s, sp)
		}
	})
}
