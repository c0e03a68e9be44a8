package engine

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/client"

	"github.com/volperm/volperm/internal/identity"
	"github.com/volperm/volperm/internal/workload"
)

// ImageIdentity is what an image says about users: its USER and its own
// /etc/passwd and /etc/group (nil when the image has none).
type ImageIdentity struct {
	User   string
	Users  identity.Users
	Groups identity.Groups
}

// ErrNoImage means the image is not present in the daemon's store.
var ErrNoImage = errors.New("image not present")

// ReadImageIdentity reads an image's USER and user databases, by creating
// (never starting) a container and copying the files out, as the daemon
// itself resolves names in the container's root filesystem.
func ReadImageIdentity(ctx context.Context, c *client.Client, image string) (ImageIdentity, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ii, err := c.ImageInspect(ctx, image)
	if err != nil {
		return ImageIdentity{}, fmt.Errorf("%w: %s: %v", ErrNoImage, image, err)
	}
	var id ImageIdentity
	if ii.Config != nil {
		id.User = ii.Config.User
	}
	cr, err := c.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config:     &container.Config{Image: image, Entrypoint: []string{"/volperm-never-started"}},
		HostConfig: &container.HostConfig{NetworkMode: "none"},
	})
	if err != nil {
		return ImageIdentity{}, fmt.Errorf("creating a container of %s to read its /etc/passwd: %w", image, err)
	}
	defer func() {
		_, _ = c.ContainerRemove(context.WithoutCancel(ctx), cr.ID, client.ContainerRemoveOptions{Force: true})
	}()
	if err := readIdentityFiles(ctx, c, cr.ID, image, &id); err != nil {
		return ImageIdentity{}, err
	}
	return id, nil
}

func readIdentityFiles(ctx context.Context, c *client.Client, ctr, what string, id *ImageIdentity) error {
	passwd, err := copyFile(ctx, c, ctr, "/etc/passwd")
	if err != nil {
		return err
	}
	if passwd != nil {
		if id.Users, err = identity.ParsePasswd(bytes.NewReader(passwd), what+":/etc/passwd"); err != nil {
			return err
		}
	}
	group, err := copyFile(ctx, c, ctr, "/etc/group")
	if err != nil {
		return err
	}
	if group != nil {
		if id.Groups, err = identity.ParseGroup(bytes.NewReader(group), what+":/etc/group"); err != nil {
			return err
		}
	}
	return nil
}

// copyFile returns a regular file's content from a container, following a
// symlink a few times inside the container's tree; nil when it is absent.
func copyFile(ctx context.Context, c *client.Client, ctr, p string) ([]byte, error) {
	for range 8 {
		res, err := c.CopyFromContainer(ctx, ctr, client.CopyFromContainerOptions{SourcePath: p})
		if err != nil {
			if strings.Contains(err.Error(), "No such container:path") || strings.Contains(strings.ToLower(err.Error()), "not found") {
				return nil, nil
			}
			return nil, fmt.Errorf("copying %s out of container %.12s: %w", p, ctr, err)
		}
		tr := tar.NewReader(res.Content)
		h, err := tr.Next()
		if err != nil {
			res.Content.Close()
			return nil, fmt.Errorf("reading %s from container %.12s: %w", p, ctr, err)
		}
		if h.Typeflag == tar.TypeSymlink {
			res.Content.Close()
			if path.IsAbs(h.Linkname) {
				p = h.Linkname
			} else {
				p = path.Join(path.Dir(p), h.Linkname)
			}
			continue
		}
		data, err := io.ReadAll(io.LimitReader(tr, 16<<20))
		res.Content.Close()
		if err != nil {
			return nil, fmt.Errorf("reading %s from container %.12s: %w", p, ctr, err)
		}
		return data, nil
	}
	return nil, fmt.Errorf("%s in container %.12s: too many symlinks", p, ctr)
}

// Container reads a created or running container as a workload: the
// effective user (Config.User already holds the image's USER when the
// container did not set one), group_add, userns mode and mounts, with the
// user resolved in the container's own /etc/passwd and /etc/group. The
// mapping is left to the caller (the daemon's remap, or the process's
// /proc maps), as is Remapped. pid is the running init pid or 0.
func Container(ctx context.Context, c *client.Client, name string) (w workload.Workload, pid int, err error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	res, err := c.ContainerInspect(ctx, name, client.ContainerInspectOptions{})
	if err != nil {
		return workload.Workload{}, 0, fmt.Errorf("inspecting container %s: %w", name, err)
	}
	ci := res.Container
	w = workload.Workload{Name: strings.TrimPrefix(ci.Name, "/"), Origin: workload.Origin{Container: ci.ID}}
	if ci.Config != nil {
		w.Image, w.UserSpec = ci.Config.Image, ci.Config.User
		w.UserFrom = "container Config.User"
	}
	if ci.HostConfig != nil {
		w.GroupAdd = ci.HostConfig.GroupAdd
		w.UsernsMode = string(ci.HostConfig.UsernsMode)
	}
	for _, m := range ci.Mounts {
		w.Mounts = append(w.Mounts, workload.Mount{Type: string(m.Type), Source: m.Source, Target: m.Destination, ReadOnly: !m.RW,
			CreateSource: m.Type == mount.TypeBind})
	}
	var id ImageIdentity
	if err := readIdentityFiles(ctx, c, ci.ID, "container "+w.Name, &id); err != nil {
		w.Unknown = append(w.Unknown, err.Error())
	} else {
		Resolve(&w, id)
	}
	if ci.State != nil && ci.State.Running {
		pid = ci.State.Pid
	}
	return w, pid, nil
}

// Resolve sets the workload's user from its spec (or the image's USER when
// the spec is empty) against the image's user databases, as the daemon
// will at start.
func Resolve(w *workload.Workload, id ImageIdentity) {
	if w.UserSpec == "" && w.UserFrom == "" {
		w.UserSpec = id.User
		if id.User != "" {
			w.UserFrom = "image USER"
		}
	}
	u, err := identity.ResolveUser(w.UserSpec, id.Users, id.Groups)
	if err != nil {
		w.UserErr = err
		return
	}
	add, err := identity.AdditionalGroups(w.GroupAdd, id.Groups)
	if err != nil {
		w.UserErr = err
		return
	}
	w.User, w.GroupAddGIDs = &u, add
}

// Containers lists container names: running ones, or all with all.
func Containers(ctx context.Context, c *client.Client, all bool) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	res, err := c.ContainerList(ctx, client.ContainerListOptions{All: all})
	if err != nil {
		return nil, fmt.Errorf("listing containers: %w", err)
	}
	var names []string
	for _, ct := range res.Items {
		if len(ct.Names) > 0 {
			names = append(names, strings.TrimPrefix(ct.Names[0], "/"))
		} else {
			names = append(names, ct.ID)
		}
	}
	return names, nil
}
