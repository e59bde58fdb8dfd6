// Package messages is the wire contract of the billing download worker: the
// download request that upstream systems publish, the completion and failure
// events the worker publishes, the request kinds, the subjects they travel on
// and the validation every request passes before any Azure call.
//
// The package imports neither NATS nor Azure code, so that upstream systems in
// Go can depend on it alone; systems in other languages use the AsyncAPI
// document docs/asyncapi.json (subjects, streams, headers, operations), the
// JSON Schemas in the schema folder (embedded here as Schemas) it references,
// and docs/contract.md (which also specifies DedupID as an algorithm).
//
// All three documents carry a "version" (currently 1). A consumer must ignore
// fields it does not know in events; the worker rejects unknown fields in
// requests so that a typo never goes unnoticed.
package messages
