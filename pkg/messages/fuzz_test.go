package messages_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/azbilling/worker/pkg/messages"
)

// FuzzDecodeRequest: any input decodes to a valid request or to a
// *ValidationError naming at least one rule; never a panic. A valid
// request survives a round trip.
func FuzzDecodeRequest(f *testing.F) {
	for _, r := range validRequests() {
		b, _ := json.Marshal(r)
		f.Add(b)
	}
	for _, doc := range invalidRequests() {
		f.Add([]byte(doc))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := messages.DecodeRequest(data, 4096)
		if err != nil {
			var ve *messages.ValidationError
			if !errors.As(err, &ve) || len(ve.Fields) == 0 {
				t.Fatalf("error %v is not a ValidationError with fields", err)
			}
			for _, fe := range ve.Fields {
				if fe.Rule == "" || fe.Message == "" {
					t.Fatalf("field error without rule or message: %+v", fe)
				}
			}
			if len(err.Error()) > 64<<10 {
				t.Fatalf("error of %d bytes", len(err.Error()))
			}
			return
		}
		again, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := messages.DecodeRequest(again, 0); err != nil {
			t.Fatalf("valid request does not survive a round trip: %v\n%s", err, again)
		}
	})
}
