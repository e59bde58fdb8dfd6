package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/azbilling/worker/pkg/client"
	"github.com/azbilling/worker/pkg/messages"
)

func (a *app) statusCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "status <request id>",
		Short:   "Show an operation's stored state",
		Long:    "Show an operation's stored state: phase, calls, last status, next poll, deadline, result or error.",
		GroupID: "read",
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("status takes one request id")
			}
			return nil
		},
		RunE: a.mark(func(cmd *cobra.Command, args []string) error { return a.status(cmd.Context(), args[0]) }),
	}
}

func (a *app) status(ctx context.Context, id string) error {
	nc, c, err := a.connect()
	if err != nil {
		return err
	}
	defer nc.Close()
	st, err := c.Status(ctx, id)
	if errors.Is(err, client.ErrNoState) {
		return fmt.Errorf("%s: %w (never accepted, rejected as invalid, or expired)", id, err)
	} else if err != nil {
		return err
	}
	if st.Request.Kind == messages.KindCollection {
		return a.statusCollection(ctx, c, id)
	}
	if a.jsonOut() {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	fmt.Fprint(a.stdout, client.HumanState(st))
	return nil
}

func (a *app) deadLettersCommand() *cobra.Command {
	var (
		from  uint64
		limit int
	)
	cmd := &cobra.Command{
		Use:     "deadletters",
		Short:   "List rejected requests (one JSON object per line when piped)",
		GroupID: "read",
		Args:    noArgs,
		RunE:    a.mark(func(cmd *cobra.Command, _ []string) error { return a.deadLetters(cmd.Context(), from, limit) }),
	}
	cmd.Flags().Uint64Var(&from, "from", 0, "first sequence to list")
	cmd.Flags().IntVar(&limit, "limit", 100, "how many to list")
	return cmd
}

func (a *app) deadLetters(ctx context.Context, from uint64, limit int) error {
	nc, c, err := a.connect()
	if err != nil {
		return err
	}
	defer nc.Close()
	// An empty stream, or none yet (no worker has run): an empty list.
	var dls []client.DeadLetter
	if n, err := c.DeadLetterCount(ctx); err != nil {
		return err
	} else if n > 0 {
		if dls, err = c.DeadLetters(ctx, from, limit); err != nil {
			return err
		}
	}
	for _, dl := range dls {
		if a.jsonOut() {
			b, _ := json.Marshal(map[string]any{
				"seq": dl.Sequence, "time": dl.Time, "code": dl.Code, "error": dl.Error,
				"subject": dl.OriginalSubject, "headers": dl.Header, "payload": string(dl.Data),
			})
			fmt.Fprintln(a.stdout, string(b))
			continue
		}
		payload := string(dl.Data)
		if len(payload) > 200 {
			payload = payload[:200] + "..."
		}
		fmt.Fprintf(a.stdout, "%d  %s  %s  %s\n    %s\n    %s\n", dl.Sequence, dl.Time.Format(time.RFC3339), dl.Code, dl.OriginalSubject, dl.Error, payload)
	}
	if !a.jsonOut() && len(dls) == 0 {
		fmt.Fprintln(a.stdout, "no dead letters")
	}
	return nil
}

func (a *app) replayCommand() *cobra.Command {
	var payload string
	cmd := &cobra.Command{
		Use:   "replay <seq>...",
		Short: "Submit dead letters again (as they are, or --payload); they are kept",
		Long: `Submit dead letters again on their original subjects, as they are, or with
--payload a corrected request instead (one sequence only). The dead letters
are kept: delete them with delete-deadletter.`,
		GroupID: "read",
		RunE: a.mark(func(cmd *cobra.Command, args []string) error {
			return a.replay(cmd.Context(), payload, args)
		}),
	}
	cmd.Flags().StringVar(&payload, "payload", "", "file with a corrected request to send instead of the stored payload (one sequence only)")
	return cmd
}

func (a *app) replay(ctx context.Context, payload string, args []string) error {
	seqs, err := parseSeqs(args)
	if err != nil {
		return err
	}
	var data []byte
	if payload != "" {
		if len(seqs) != 1 {
			return usagef("--payload replaces one dead letter; give one sequence")
		}
		if data, err = os.ReadFile(payload); err != nil {
			return usagef("%v", err)
		}
		if _, err := messages.DecodeRequest(data, 0); err != nil {
			return usagef("--payload: %v", err)
		}
	}
	nc, c, err := a.connect()
	if err != nil {
		return err
	}
	defer nc.Close()
	for _, seq := range seqs {
		if err := c.Replay(ctx, seq, data); err != nil {
			return err
		}
		if a.jsonOut() {
			fmt.Fprintf(a.stdout, "{\"replayed\":%d}\n", seq)
		} else {
			fmt.Fprintf(a.stdout, "replayed dead letter %d (kept; delete it with delete-deadletter %d)\n", seq, seq)
		}
	}
	return nil
}

func (a *app) deleteCommand() *cobra.Command {
	var yes bool
	cmd := &cobra.Command{
		Use:   "delete-deadletter <seq>...",
		Short: "Delete dead letters (asks first; --yes when not on a terminal)",
		Long: `Delete dead letters. This cannot be undone: on a terminal it asks first;
elsewhere it refuses without --yes.`,
		GroupID: "read",
		RunE: a.mark(func(cmd *cobra.Command, args []string) error {
			return a.deleteDeadLetters(cmd.Context(), yes, args)
		}),
	}
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "delete without asking")
	return cmd
}

func (a *app) deleteDeadLetters(ctx context.Context, yes bool, args []string) error {
	seqs, err := parseSeqs(args)
	if err != nil {
		return err
	}
	if !yes {
		if !a.ttyIn {
			return usagef("delete-deadletter deletes for good: give --yes (not on a terminal, so no question is asked)")
		}
		fmt.Fprintf(a.stderr, "Delete dead letter(s) %s for good? [y/N] ", strings.Join(args, ", "))
		answer, _ := bufio.NewReader(a.stdin).ReadString('\n')
		if ans := strings.ToLower(strings.TrimSpace(answer)); ans != "y" && ans != "yes" {
			fmt.Fprintln(a.stderr, "nothing deleted")
			return exitError(exitFailed)
		}
	}
	nc, c, err := a.connect()
	if err != nil {
		return err
	}
	defer nc.Close()
	for _, seq := range seqs {
		if err := c.DeleteDeadLetter(ctx, seq); err != nil {
			return fmt.Errorf("delete dead letter %d: %w", seq, err)
		}
		if a.jsonOut() {
			fmt.Fprintf(a.stdout, "{\"deleted\":%d}\n", seq)
		} else {
			fmt.Fprintf(a.stdout, "deleted dead letter %d\n", seq)
		}
	}
	return nil
}

func parseSeqs(args []string) ([]uint64, error) {
	if len(args) == 0 {
		return nil, usagef("give at least one dead-letter sequence number")
	}
	out := make([]uint64, 0, len(args))
	for _, a := range args {
		n, err := strconv.ParseUint(a, 10, 64)
		if err != nil || n == 0 {
			return nil, usagef("%q is not a sequence number", a)
		}
		out = append(out, n)
	}
	return out, nil
}
