package main

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

func init() {
	registerCommand(&cli.Command{
		Name:  "operator",
		Usage: "cluster operations: the masters' raft peers",
		Subcommands: []*cli.Command{{
			Name:  "raft",
			Usage: "the masters' raft configuration",
			Subcommands: []*cli.Command{
				{
					Name:   "list-peers",
					Usage:  "every raft server: id, address, leader, voter, gossip status",
					Flags:  []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print JSON"}},
					Action: raftListPeers,
				},
				{
					Name:      "remove-peer",
					Usage:     "remove a raft server (a master that is gone for good) by id",
					ArgsUsage: "ID",
					Action:    raftRemovePeer,
				},
			},
		}},
	})
}

func raftListPeers(c *cli.Context) error {
	conf, err := apiClient(c).RaftConfiguration(c.Context)
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(c, conf)
	}
	tw := newTable(c, "ID", "ADDRESS", "STATE", "VOTER", "STATUS")
	for _, s := range conf.Servers {
		state := "follower"
		if s.Leader {
			state = "leader"
		}
		tw.row(s.ID, s.Address, state, fmt.Sprint(s.Voter), s.Status)
	}
	return tw.flush()
}

func raftRemovePeer(c *cli.Context) error {
	if c.NArg() != 1 {
		return fmt.Errorf("usage: weft operator raft remove-peer ID (ids: weft operator raft list-peers)")
	}
	id := c.Args().First()
	if err := apiClient(c).RemoveRaftPeer(c.Context, id); err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "removed raft server %s\n", id)
	return nil
}
