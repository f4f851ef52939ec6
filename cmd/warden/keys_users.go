package main

import (
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/warden-llm/warden/safety/keys"
	"github.com/warden-llm/warden/safety/quota"
)

// parseRequireUser reads --require-user: true or false set the key's own
// rule, default (clear) goes back to keys.require_user.
func parseRequireUser(s string) (v *bool, clear bool, err error) {
	switch s {
	case "", "default":
		return nil, true, nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return nil, false, fmt.Errorf("--require-user: want true, false or default, got %q", s)
	}
	return &b, false, nil
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strconv.Quote(s)
	}
	return out
}

// newKeyUserCmds are the commands on a delegate key's end users: users,
// block-user and unblock-user.
func newKeyUserCmds(g *globals, asJSON *bool) []*cobra.Command {
	users := &cobra.Command{
		Use:   "users ID",
		Short: "List a delegate key's end users: tokens today and this month, last seen",
		Long: `Users lists the end users a delegate key named this month, most recently seen
first, from the database: a running server writes each charge as it settles,
so requests in flight are not counted (GET /admin/keys/{id}/users shows them).`,
		Args: cobra.ExactArgs(1),
		RunE: g.withKeys(func(cmd *cobra.Command, args []string, m *keys.Manager, _ Config) error {
			k, err := m.Get(cmd.Context(), args[0])
			if err != nil {
				return notFound(args[0], err)
			}
			us, err := quota.ReadUserUsage(cmd.Context(), m.DB, k.ID, time.Now())
			if err != nil {
				return err
			}
			if us == nil {
				us = []quota.UserUsage{}
			}
			if *asJSON {
				return writeJSON(g, map[string]any{"id": k.ID, "users": us, "blocked_users": k.BlockedUsers})
			}
			if !hasScope(k.Scopes, keys.ScopeDelegate) {
				fmt.Fprintf(g.stdout, "key %s has no delegate scope: its requests name no end users\n", k.ID)
			}
			blocked := map[string]bool{}
			for _, u := range k.BlockedUsers {
				blocked[u] = true
			}
			now := time.Now()
			tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "USER\tTOKENS TODAY\tTOKENS THIS MONTH\tLAST SEEN\tBLOCKED")
			for _, u := range us {
				fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%v\n", strconv.Quote(u.User), u.TokensToday, u.TokensThisMonth, ago(now, u.LastSeen), blocked[u.User])
				delete(blocked, u.User)
			}
			for _, u := range k.BlockedUsers {
				if blocked[u] { // blocked, not seen this month
					fmt.Fprintf(tw, "%s\t0\t0\tnever\ttrue\n", strconv.Quote(u))
				}
			}
			return tw.Flush()
		}),
	}
	block := func(use, short string, doBlock bool) *cobra.Command {
		return &cobra.Command{
			Use:   use + " ID USER",
			Short: short,
			Args:  cobra.ExactArgs(2),
			RunE: g.withKeys(func(cmd *cobra.Command, args []string, m *keys.Manager, _ Config) error {
				do := m.UnblockUser
				if doBlock {
					do = m.BlockUser
				}
				if err := do(cmd.Context(), osActor(), args[0], args[1]); err != nil {
					return notFound(args[0], err)
				}
				k, err := m.Get(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				if *asJSON {
					return writeJSON(g, k)
				}
				verb := "unblocked"
				if doBlock {
					verb = "blocked"
				}
				fmt.Fprintf(g.stdout, "%s end user %s on key %s\n", verb, strconv.Quote(args[1]), k.ID)
				return nil
			}),
		}
	}
	return []*cobra.Command{
		users,
		block("block-user", "Refuse one end user of a delegate key (403 for that user only)", true),
		block("unblock-user", "Let a blocked end user use the key again", false),
	}
}

func hasScope(ss []keys.Scope, s keys.Scope) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
