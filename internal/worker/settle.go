package worker

import (
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/azbilling/worker/internal/operation"
)

// settle settles msg as the machine's step says: acknowledged once the
// step's work is done, handed back for a later delivery, terminated, or
// kept alive while a long download runs. It is the one place where the
// worker settles a message (settle_test.go holds it to that).
func (w *Worker) settle(msg jetstream.Msg, step operation.Step) error {
	switch step.Action {
	case operation.Schedule, operation.Publish, operation.Republish, operation.Ack, operation.Spawn:
		return msg.Ack()
	case operation.Retry, operation.Redeliver:
		if step.Delay <= 0 {
			return msg.Nak()
		}
		return msg.NakWithDelay(step.Delay)
	case operation.Drop:
		if step.Reason == "" {
			return msg.Term()
		}
		return msg.TermWithReason(step.Reason)
	case operation.KeepAlive:
		return msg.InProgress()
	}
	// A step with work left (a call, an archive, a rejection): settling
	// now would lose it. The message comes back after its ack wait.
	err := fmt.Errorf("worker: no settlement for step %v", step.Action)
	w.log.Error("settle", "error", err)
	return err
}
