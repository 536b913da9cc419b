package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluicegw/sluice/control/api"
	"github.com/sluicegw/sluice/control/client"
)

func newTokenCommand(g *globalOptions) *cobra.Command {
	tok := &cobra.Command{Use: "token", Aliases: []string{"tokens"}, Short: "Manage API tokens (admin)"}
	var role string
	create := &cobra.Command{
		Use:   "create NAME --role admin|operator|read-only",
		Short: "Create a token; its text is printed once",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			t, err := c.CreateToken(cmd.Context(), api.CreateToken{Name: args[0], Role: role})
			if err != nil {
				return err
			}
			if g.output == "json" {
				return g.printJSON(t)
			}
			fmt.Fprintf(g.stderr, "token %s (%s) created; it is shown only now:\n", t.ID, t.Role)
			_, err = fmt.Fprintln(g.stdout, t.Token)
			return err
		},
	}
	create.Flags().StringVar(&role, "role", "read-only", "admin, operator or read-only")
	tok.AddCommand(create,
		&cobra.Command{
			Use: "list", Short: "List tokens (never their secrets)", Args: exactArgs(0),
			RunE: func(cmd *cobra.Command, _ []string) error {
				c, err := g.client()
				if err != nil {
					return err
				}
				ts, err := c.ListTokens(cmd.Context())
				if err != nil {
					return err
				}
				if g.output == "json" {
					return g.printJSON(api.TokenList{Tokens: ts})
				}
				rows := [][]string{{"ID", "ROLE", "CREATED", "NAME"}}
				for _, t := range ts {
					rows = append(rows, []string{t.ID, t.Role, t.Created.Format(time.RFC3339), t.Name})
				}
				return g.table(rows)
			},
		},
		removeCommand(g, "revoke ID", "Revoke a token", "revoked", "token", func(ctx context.Context, c *client.Client, id string) error {
			return c.RevokeToken(ctx, id)
		}),
	)
	return tok
}
