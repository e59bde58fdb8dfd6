// Package billing is the worker's Azure client for the Billing and Cost
// Management operations (the five first ones, the rest of the download
// family, and the paged invoice listings, whose nextLink it checks as it
// checks a Location): one Operation descriptor per request kind (method,
// path template, api-version, query, body, result shape), and a Client that
// starts an operation and polls its Location on azcore's pipeline with an
// azidentity (or any azcore.TokenCredential) credential.
//
// The client never waits: it makes one HTTP call and says what came back.
// Deciding when to call again belongs to package poll and to the queue. The
// pipeline's own retry policy is off, so a throttled or failing call returns
// at once with the headers the caller needs to schedule the next attempt.
package billing
