package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/spf13/cobra"

	"github.com/azbilling/worker/pkg/client"
	"github.com/azbilling/worker/pkg/messages"
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
		Use:   "fetch <request id> --output <file or directory>",
		Short: "Write a request's archived document to a file, its digest checked",
		Long: `Stream a request's archived document from its store (the NATS Object Store,
or Azure Blob Storage) to a file, checking its SHA-256 against the completion
event's. The file appears only once the digest checked out: on a mismatch
(a tampered or damaged object) nothing is left behind.

A report of several files (a cost details report of more than one blob) is
written into the directory --output names (made if missing): every file,
each digest checked, and the archive manifest (manifest.json). An existing
directory as --output receives a single document under its own name.

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
	fs.StringVarP(&out, "output", "o", "", "file to write the document to (a directory for a report of several files)")
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
	arc, err := c.Archived(ctx, id)
	if err != nil {
		return err
	}
	if st, serr := os.Stat(out); path.Base(arc.Name) == messages.ManifestFile || serr == nil && st.IsDir() {
		// A report of several files, or a directory to write into: every
		// file, and the archive manifest.
		paths, err := c.FetchDir(ctx, id, out)
		if err != nil {
			return err
		}
		if a.jsonOut() {
			b, _ := json.Marshal(map[string]any{"dir": out, "files": paths, "archive": arc})
			fmt.Fprintln(a.stdout, string(b))
			return nil
		}
		fmt.Fprintf(a.stdout, "wrote %d files to %s, every sha256 checked (from %s %s %s)\n", len(paths), out, arc.Store, arc.Bucket, arc.Name)
		for _, p := range paths {
			fmt.Fprintf(a.stdout, "  %s\n", p)
		}
		return nil
	}
	arc, err = c.FetchFile(ctx, id, out)
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
