package messages

import "embed"

// Schemas holds the JSON Schemas (draft 2020-12) of the four documents:
// schema/request.schema.json, schema/completed.schema.json,
// schema/failed.schema.json and schema/schedule.schema.json.
//
//go:embed schema/*.schema.json
var Schemas embed.FS
