package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/spf13/cobra"

	"github.com/azbilling/worker/pkg/client"
)

// blobFlags say how fetch reaches documents archived in Azure Blob
// Storage.
type blobFlags struct {
	accountURL, connFile string
}

func (a *app) fetchCommand() *cobra.Command {
	var (
		out  string
		blob blobFlags
	)
	cmd := &cobra.Command{
		Use:   "fetch <request id> --output <file>",
		Short: "Write a request's archived document to a file, its digest checked",
		Long: `Stream a request's archived document from its store (the NATS Object Store,
or Azure Blob Storage) to a file, checking its SHA-256 against the completion
event's. The file appears only once the digest checked out: on a mismatch
(a tampered or damaged object) nothing is left behind.

A document in Azure Blob Storage is read from --account-url with Azure's
default credential chain (environment, workload identity, managed identity,
Azure CLI), or with the connection string in --connection-string-file.`,
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
		RunE: a.mark(func(cmd *cobra.Command, args []string) error { return a.fetch(cmd.Context(), args[0], out, blob) }),
	}
	fs := cmd.Flags()
	fs.StringVarP(&out, "output", "o", "", "file to write the document to")
	fs.StringVar(&blob.accountURL, "account-url", envOr(a.getenv, "BILLING_ARCHIVE_ACCOUNT_URL", ""),
		"Blob service URL of the archive's storage account, for documents archived in Azure Blob Storage (env BILLING_ARCHIVE_ACCOUNT_URL)")
	fs.StringVar(&blob.connFile, "connection-string-file", envOr(a.getenv, "BILLING_ARCHIVE_CONNECTION_STRING_FILE", ""),
		"file holding the Blob Storage connection string instead (a local Azurite; env BILLING_ARCHIVE_CONNECTION_STRING_FILE)")
	return cmd
}

func (a *app) fetch(ctx context.Context, id, out string, blob blobFlags) error {
	nc, c, err := a.connect()
	if err != nil {
		return err
	}
	defer nc.Close()
	if err := blob.open(c); err != nil {
		return err
	}
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

// open lets c read Blob Storage as the flags say (nothing when they name
// no account).
func (b blobFlags) open(c *client.Client) error {
	switch {
	case b.connFile != "" && b.accountURL != "":
		return usagef("give --account-url or --connection-string-file, not both")
	case b.connFile != "":
		conn, err := os.ReadFile(b.connFile)
		if err != nil {
			return usagef("--connection-string-file: %v", err)
		}
		c.SetBlobOpener(client.BlobConnectionString(strings.TrimSpace(string(conn))))
	case b.accountURL != "":
		cred, err := azidentity.NewDefaultAzureCredential(nil)
		if err != nil {
			return fmt.Errorf("azure credential: %w", err)
		}
		c.SetBlobOpener(client.BlobAccount(b.accountURL, cred))
	}
	return nil
}
