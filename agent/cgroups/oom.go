package cgroups

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// OOM kills are told by the kernel, not polled: one watcher per Manager
// with one epoll instance, waited on by one goroutine through the
// runtime's poller, whatever the number of groups.
//
//   - v2: one inotify instance in the epoll set; each group's
//     memory.events has a watch (the kernel raises IN_MODIFY on the file
//     when one of its counters changes).
//   - v1: one eventfd per group in the epoll set, registered through
//     cgroup.event_control on the group's memory.oom_control (signalled
//     when the group goes out of memory, and when it is removed).
//
// Either event only says "look": the watcher then reads the group's
// oom_kill counter, as the poll did. v1 signals before the kernel has
// picked and killed its victim, so a zero count is read again for a
// while (oomConfirm) before the event is let go.

// oomConfirm is how long an event is followed by reads of the oom_kill
// counter while it stays 0.
var oomConfirm = 2 * time.Second

type oomWatcher struct {
	mu      sync.Mutex
	ep      *os.File // the epoll instance, in the runtime's poller; nil while nothing is watched
	epfd    int      // ep's descriptor (ep.Fd() would make it blocking)
	ino     int      // v2: the inotify instance in ep; -1 on v1
	watches map[int]*oomWatch
}

// oomWatch is one group's watch; key is its eventfd (v1) or inotify
// watch descriptor (v2).
type oomWatch struct {
	g   *Group
	fn  func()
	key int

	mu       sync.Mutex
	checking bool // a confirm goroutine runs
	again    bool // an event came meanwhile: confirm reads on past its deadline
	fired    bool // fn was called
	stopped  bool
}

// WatchOOM calls fn once, on a goroutine of its own, when the kernel has
// killed a process of g for exceeding its memory limit (g's oom_kill
// counter is above 0, also when it already was). stop ends the watch;
// call it before destroying g. An error means the kernel would not tell
// (the caller may poll OOMKills instead).
func (m *Manager) WatchOOM(g *Group, fn func()) (stop func(), err error) {
	w := &m.oom
	w.mu.Lock()
	if w.ep == nil {
		if err := w.open(m.version); err != nil {
			w.mu.Unlock()
			return nil, err
		}
	}
	ow := &oomWatch{g: g, fn: fn}
	if m.version == V2 {
		ow.key, err = unix.InotifyAddWatch(w.ino, filepath.Join(g.dirs[""], "memory.events"), unix.IN_MODIFY)
		if err != nil {
			err = fmt.Errorf("watching %s/memory.events: %w", g.dirs[""], err)
		}
	} else {
		ow.key, err = registerV1(w.epfd, g.dirs["memory"])
	}
	if err != nil {
		w.closeIfIdle()
		w.mu.Unlock()
		return nil, err
	}
	if old := w.watches[ow.key]; old != nil {
		// v2: the same group watched twice gets the same descriptor.
		old.stop()
	}
	w.watches[ow.key] = ow
	w.mu.Unlock()
	if g.OOMKills() > 0 {
		w.kick(ow)
	}
	return func() { w.remove(ow) }, nil
}

// registerV1 asks for an eventfd signal on the group's out-of-memory
// events and adds it to the epoll set ep; it returns the eventfd.
func registerV1(ep int, dir string) (int, error) {
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("creating an eventfd for %s: %w", dir, err)
	}
	cfd, err := unix.Open(filepath.Join(dir, "memory.oom_control"), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		unix.Close(efd)
		return -1, fmt.Errorf("opening %s/memory.oom_control: %w", dir, err)
	}
	// The kernel holds the eventfd; memory.oom_control may be closed once
	// registered. Closing the eventfd unregisters.
	err = os.WriteFile(filepath.Join(dir, "cgroup.event_control"), fmt.Appendf(nil, "%d %d", efd, cfd), 0o644)
	unix.Close(cfd)
	if err != nil {
		unix.Close(efd)
		return -1, fmt.Errorf("registering for %s's OOM events: %w", dir, err)
	}
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, efd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(efd)}); err != nil {
		unix.Close(efd)
		return -1, fmt.Errorf("adding an eventfd to epoll: %w", err)
	}
	return efd, nil
}

// open makes the epoll (and, v2, inotify) instances and starts the
// watcher's goroutine. w.mu is held.
func (w *oomWatcher) open(v Version) error {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("creating an epoll instance: %w", err)
	}
	ino := -1
	if v == V2 {
		ino, err = unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
		if err == nil {
			err = unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, ino, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(ino)})
		}
		if err != nil {
			if ino >= 0 {
				unix.Close(ino)
			}
			unix.Close(epfd)
			return fmt.Errorf("creating an inotify instance: %w", err)
		}
	}
	// Non-blocking, so that os.NewFile puts it in the runtime's poller: the
	// goroutine parks until the kernel has something, no thread is held.
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		if ino >= 0 {
			unix.Close(ino)
		}
		return err
	}
	w.ep, w.epfd, w.ino, w.watches = os.NewFile(uintptr(epfd), "oom-epoll"), epfd, ino, map[int]*oomWatch{}
	go w.loop(w.ep, ino)
	return nil
}

// closeIfIdle closes the instances once nothing is watched; the loop
// then ends. w.mu is held.
func (w *oomWatcher) closeIfIdle() {
	if len(w.watches) > 0 || w.ep == nil {
		return
	}
	if w.ino >= 0 {
		unix.Close(w.ino)
	}
	w.ep.Close()
	w.ep, w.epfd, w.ino, w.watches = nil, -1, -1, nil
}

func (w *oomWatcher) remove(ow *oomWatch) {
	ow.stop()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.watches[ow.key] != ow {
		return // already gone (v2: the group was removed) or never added
	}
	delete(w.watches, ow.key)
	if w.ino >= 0 {
		_, _ = unix.InotifyRmWatch(w.ino, uint32(ow.key))
	} else {
		_ = unix.EpollCtl(w.epfd, unix.EPOLL_CTL_DEL, ow.key, nil)
		unix.Close(ow.key)
	}
	w.closeIfIdle()
}

func (ow *oomWatch) stop() {
	ow.mu.Lock()
	ow.stopped = true
	ow.mu.Unlock()
}

// loop waits for events on ep until it is closed.
func (w *oomWatcher) loop(ep *os.File, ino int) {
	rc, err := ep.SyscallConn()
	if err != nil {
		return
	}
	evs := make([]unix.EpollEvent, 64)
	buf := make([]byte, 64*(unix.SizeofInotifyEvent+unix.NAME_MAX+1))
	for {
		n := 0
		err := rc.Read(func(fd uintptr) bool {
			var err error
			n, err = unix.EpollWait(int(fd), evs, 0)
			return err == nil && n > 0 || err != nil && err != unix.EINTR
		})
		if err != nil {
			return // closed
		}
		for _, ev := range evs[:max(n, 0)] {
			if int(ev.Fd) == ino {
				w.readInotify(ino, buf)
				continue
			}
			var b [8]byte
			_, _ = unix.Read(int(ev.Fd), b[:]) // the counter, reset
			w.mu.Lock()
			ow := w.watches[int(ev.Fd)]
			w.mu.Unlock()
			if ow != nil {
				w.kick(ow)
			}
		}
	}
}

// readInotify reads every queued inotify event (v2).
func (w *oomWatcher) readInotify(ino int, buf []byte) {
	for {
		n, err := unix.Read(ino, buf)
		if err != nil || n <= 0 {
			return // EAGAIN: drained (or closed)
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			off += unix.SizeofInotifyEvent + int(ev.Len)
			w.mu.Lock()
			ow := w.watches[int(ev.Wd)] // IN_IGNORED (the group removed): its stop removes it
			w.mu.Unlock()
			if ow != nil && ev.Mask&unix.IN_MODIFY != 0 {
				w.kick(ow)
			}
		}
	}
}

// kick reads ow's oom_kill counter on a goroutine of its own, again for
// up to oomConfirm while it is 0, and calls fn once it is not.
func (w *oomWatcher) kick(ow *oomWatch) {
	ow.mu.Lock()
	if ow.checking {
		ow.again = true
	}
	if ow.checking || ow.fired || ow.stopped {
		ow.mu.Unlock()
		return
	}
	ow.checking = true
	ow.mu.Unlock()
	go func() {
		deadline := time.Now().Add(oomConfirm)
		for wait := 2 * time.Millisecond; ; wait = min(2*wait, 200*time.Millisecond) {
			killed := ow.g.OOMKills() > 0
			ow.mu.Lock()
			if !killed && ow.again && time.Now().After(deadline) {
				ow.again, deadline = false, time.Now().Add(oomConfirm)
			}
			if ow.stopped || killed || time.Now().After(deadline) {
				fire := killed && !ow.stopped
				ow.checking, ow.fired = false, ow.fired || fire
				ow.mu.Unlock()
				if fire {
					ow.fn()
				}
				return
			}
			ow.mu.Unlock()
			time.Sleep(wait)
		}
	}()
}
