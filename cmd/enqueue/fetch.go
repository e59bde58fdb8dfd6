package main

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"
)

func (a *app) fetchCommand() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "fetch <request id> --output <file>",
		Short: "Write a request's archived document to a file, its digest checked",
		Long: `Stream a request's archived document from its store (the NATS Object Store,
or Azure Blob Storage) to a file, checking its SHA-256 against the completion
event's. The file appears only once the digest checked out: on a mismatch
(a tampered or damaged object) nothing is left behind.`,
		GroupID: "read",
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("fetch takes one request id")
			}
			if out == "" {
				return usagef("fetch needs --output <file>")
			}
			return nil
		},
		RunE: a.mark(func(cmd *cobra.Command, args []string) error { return a.fetch(cmd.Context(), args[0], out) }),
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "file to write the document to")
	return cmd
}

func (a *app) fetch(ctx context.Context, id, out string) error {
	nc, c, err := a.connect()
	if err != nil {
		return err
	}
	defer nc.Close()
	arc, err := c.FetchFile(ctx, id, out)
	if err != nil {
		return err
	}
	if a.jsonOut() {
		b, _ := json.Marshal(map[string]any{"file": out, "archive": arc})
		fmt.Fprintln(a.stdout, string(b))
		return nil
	}
	fmt.Fprintf(a.stdout, "wrote %s: %d bytes, %s, sha256 %s (from %s %s %s)\n", out, arc.Size, arc.ContentType, arc.SHA256, arc.Store, arc.Bucket, arc.Name)
	return nil
}
