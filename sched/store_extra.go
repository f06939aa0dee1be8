package sched

import "github.com/hashicorp/raft"

// LocalRaftAddr is the raft address this server is reached at by its peers
// (the in-process address for a single in-memory voter).
func (s *Store) LocalRaftAddr() string {
	if s.trans == nil {
		return ""
	}
	return string(s.trans.LocalAddr())
}

// RaftServers returns the raft configuration's servers (id → address), or
// nil when it cannot be read.
func (s *Store) RaftServers() map[string]string {
	f := s.raft.GetConfiguration()
	if f.Error() != nil {
		return nil
	}
	out := map[string]string{}
	for _, srv := range f.Configuration().Servers {
		out[string(srv.ID)] = string(srv.Address)
	}
	return out
}

// hasRaftState reports whether this server already belongs to a raft
// cluster (it bootstrapped, joined, or restored state).
func (s *Store) hasRaftState() bool {
	if s.raft.LastIndex() > 0 {
		return true
	}
	return len(s.RaftServers()) > 0
}

// bootstrapWith forms a new cluster of the given voters (id → address).
func (s *Store) bootstrapWith(voters map[string]string) error {
	var conf raft.Configuration
	for id, addr := range voters {
		conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(id), Address: raft.ServerAddress(addr)})
	}
	return s.raft.BootstrapCluster(conf).Error()
}
