package api

import "encoding/json"

// PersistentVolume is a volume's "persistent" object: a local persistent
// volume Marathon reserves on the agent a resident task first lands on.
// weft provides type "root" (a directory under the agent's work dir).
type PersistentVolume struct {
	Type        string     `json:"type,omitempty"` // root (default), path, mount
	Size        float64    `json:"size"`           // MiB
	MaxSize     *float64   `json:"maxSize,omitempty"`
	ProfileName string     `json:"profileName,omitempty"`
	Constraints [][]string `json:"constraints,omitempty"`
}

// ExternalVolume is a volume's "external" object. weft mounts Docker named
// volumes of the local driver (provider dvdi, options "dvdi/driver": "local").
type ExternalVolume struct {
	Name     string            `json:"name"`
	Provider string            `json:"provider"`
	Options  map[string]string `json:"options,omitempty"`
	Size     *float64          `json:"size,omitempty"`
}

// ParsePersistent decodes v.Persistent; ok is false when v has none.
func (v Volume) ParsePersistent() (p PersistentVolume, ok bool, err error) {
	if len(v.Persistent) == 0 || string(v.Persistent) == "null" {
		return p, false, nil
	}
	err = json.Unmarshal(v.Persistent, &p)
	return p, true, err
}

// ParseExternal decodes v.External; ok is false when v has none.
func (v Volume) ParseExternal() (e ExternalVolume, ok bool, err error) {
	if len(v.External) == 0 || string(v.External) == "null" {
		return e, false, nil
	}
	err = json.Unmarshal(v.External, &e)
	return e, true, err
}

// Residency is an app's "residency" object (resident tasks).
type Residency struct {
	RelaunchEscalationTimeoutSeconds int64  `json:"relaunchEscalationTimeoutSeconds"`
	TaskLostBehavior                 string `json:"taskLostBehavior"` // WAIT_FOREVER or RELAUNCH_AFTER_TIMEOUT
}

// LocalVolume is an entry of a resident task's localVolumes, as Marathon
// shows it in /v2/apps/{id}/tasks.
type LocalVolume struct {
	ContainerPath string `json:"containerPath"`
	PersistenceID string `json:"persistenceId"`
}

// LocalVolumeSpec is a persistent volume as the agent provides it: the
// directory named by PersistenceID under the agent's volumes dir, linked
// (process tasks) or bound (Docker) at ContainerPath in the sandbox.
type LocalVolumeSpec struct {
	ContainerPath string  `json:"containerPath"`
	PersistenceID string  `json:"persistenceId"`
	Size          float64 `json:"size"` // MiB
	Mode          string  `json:"mode,omitempty"`
}

// Reservation is the disk a resident instance holds on one agent: its
// persistent volumes. It outlives the instance's tasks: a relaunch goes to
// the same agent and gets the same volumes. It is released when the app is
// deleted, when the task is killed with wipe=true, or when the app's
// residency gives up on a lost agent (RELAUNCH_AFTER_TIMEOUT).
type Reservation struct {
	ID        string            `json:"id"`
	AppID     string            `json:"appId"`
	AgentID   string            `json:"agentId"`
	Host      string            `json:"host"`
	Site      string            `json:"site,omitempty"`
	TaskID    string            `json:"taskId,omitempty"` // the last task launched on it
	Volumes   []LocalVolumeSpec `json:"volumes"`
	CreatedAt string            `json:"createdAt"`
}

// Disk is the MiB the reservation holds.
func (r *Reservation) Disk() float64 {
	var d float64
	for _, v := range r.Volumes {
		d += v.Size
	}
	return d
}

// LocalVolumes is what a task on r shows in localVolumes.
func (r *Reservation) LocalVolumes() []LocalVolume {
	out := make([]LocalVolume, 0, len(r.Volumes))
	for _, v := range r.Volumes {
		out = append(out, LocalVolume{ContainerPath: v.ContainerPath, PersistenceID: v.PersistenceID})
	}
	return out
}
