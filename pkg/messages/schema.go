package messages

import "embed"

// Schemas holds the JSON Schemas (draft 2020-12) of the three documents:
// schema/request.schema.json, schema/completed.schema.json and
// schema/failed.schema.json.
//
//go:embed schema/*.schema.json
var Schemas embed.FS
