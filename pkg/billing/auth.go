package billing

import (
	"context"
	"errors"
	"net/http"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/azbilling/worker/pkg/redact"
)

// ErrAuth is matched by every *AuthError.
var ErrAuth = errors.New("billing: no token")

// AuthError says the credential could not produce a token, so no request
// was sent to Azure.
type AuthError struct {
	// Permanent is true when the identity provider refused the credential
	// (a 4xx answer such as invalid_client); false when it was unreachable,
	// slow or failing, which waiting may cure.
	Permanent bool
	Err       error
}

func (e *AuthError) Error() string {
	return "billing: could not get a token: " + redact.String(e.Err.Error())
}

func (e *AuthError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrAuth) true.
func (e *AuthError) Is(target error) bool { return target == ErrAuth }

// tagged wraps a credential so that its failures are told apart from
// failures of the call to Azure.
type tagged struct{ cred azcore.TokenCredential }

func (t *tagged) GetToken(ctx context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	tk, err := t.cred.GetToken(ctx, opts)
	if err != nil {
		var failed *azidentity.AuthenticationFailedError
		permanent := errors.As(err, &failed) && failed.RawResponse != nil &&
			failed.RawResponse.StatusCode >= 400 && failed.RawResponse.StatusCode < 500 &&
			failed.RawResponse.StatusCode != http.StatusTooManyRequests && failed.RawResponse.StatusCode != http.StatusRequestTimeout
		return tk, &AuthError{Permanent: permanent, Err: err}
	}
	return tk, nil
}
