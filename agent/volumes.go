package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/weftnet/weft/sched/api"
)

// Local persistent volumes. The master reserves them for resident tasks
// (Marathon's persistent volumes); the agent gives each one a directory
// under its data dir, named by the volume's persistence id, created once
// and kept across relaunches, agent restarts and the end of the task. A
// process task sees it at sandbox/<containerPath> (a symlink); a Docker
// task gets it bound at /mnt/mesos/sandbox/<containerPath>, Mesos's
// sandbox inside a container. Releasing a reservation leaves the data on
// disk, as Mesos does when it destroys a persistent volume.

// containerSandbox is the sandbox's path inside a Docker container, as
// Mesos's Docker containerizer mounts it.
const containerSandbox = "/mnt/mesos/sandbox"

// volumeDir is where the persistent volume pid lives under dir.
func volumeDir(dir, pid string) (string, error) {
	if dir == "" {
		return "", errors.New("this agent has no volumes dir")
	}
	name := sanitizeID(pid)
	if name == "" || name == "." || name == ".." {
		return "", fmt.Errorf("persistence id %q is not a usable directory name", pid)
	}
	return filepath.Join(dir, name), nil
}

// relName checks a persistent volume's containerPath: one path element.
func relName(p string) error {
	if p == "" || p == "." || p == ".." || strings.ContainsAny(p, "/\x00") {
		return fmt.Errorf("a persistent volume's containerPath %q must be one relative path element", p)
	}
	return nil
}

// prepareLocalVolumes creates the task's persistent volume directories
// (once; existing data is kept) owned by uid:gid when they are >= 0, and,
// when link is true, links each one into the sandbox at its containerPath.
// It returns each volume's directory by containerPath.
func prepareLocalVolumes(vols []api.LocalVolumeSpec, dir, sandbox string, uid, gid int, link bool) (map[string]string, error) {
	if len(vols) == 0 {
		return nil, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating the volumes dir: %w", err)
	}
	out := map[string]string{}
	for _, v := range vols {
		if err := relName(v.ContainerPath); err != nil {
			return nil, err
		}
		d, err := volumeDir(dir, v.PersistenceID)
		if err != nil {
			return nil, err
		}
		created := false
		if _, err := os.Lstat(d); errors.Is(err, os.ErrNotExist) {
			if err := os.Mkdir(d, 0o750); err != nil {
				return nil, fmt.Errorf("creating persistent volume %s: %w", v.PersistenceID, err)
			}
			created = true
		} else if err != nil {
			return nil, fmt.Errorf("persistent volume %s: %w", v.PersistenceID, err)
		}
		if fi, err := os.Lstat(d); err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("persistent volume %s: %s is not a directory", v.PersistenceID, d)
		}
		if created && uid >= 0 {
			if err := os.Chown(d, uid, gid); err != nil {
				return nil, fmt.Errorf("giving persistent volume %s to the task's user: %w", v.PersistenceID, err)
			}
		}
		out[v.ContainerPath] = d
		if !link {
			continue
		}
		at := filepath.Join(sandbox, v.ContainerPath)
		if cur, err := os.Readlink(at); err == nil && cur == d {
			continue
		}
		_ = os.Remove(at)
		if err := os.Symlink(d, at); err != nil {
			return nil, fmt.Errorf("linking persistent volume %s at %s: %w", v.PersistenceID, v.ContainerPath, err)
		}
	}
	return out, nil
}
