// Submits one download request to the billing worker and waits for its
// event, using only the published contract (docs/asyncapi.json, the JSON
// Schemas in pkg/messages/schema, docs/contract.md).
//
//   NATS_URL=nats://127.0.0.1:4222 node submit.mjs
//
// Environment: NATS_URL (default nats://127.0.0.1:4222), BILLING_PREFIX
// (default billing), REQUEST_ID (default node-<time>), TIMEOUT_MS (default
// 60000). Exit status: 0 completed, 1 failed, 3 no event in time.
import { readFileSync } from "node:fs";
import { connect, headers, JSONCodec } from "nats";
import { dedupID } from "./dedup.mjs";

const url = process.env.NATS_URL || "nats://127.0.0.1:4222";
const prefix = process.env.BILLING_PREFIX || "billing";
const id = process.env.REQUEST_ID || `node-${Date.now().toString(36)}`;
const timeoutMs = Number(process.env.TIMEOUT_MS || 60000);

// The request (request.schema.json): an invoice summary the dev mode's
// emulator answers.
const request = {
  version: 1,
  id,
  kind: "invoice-summary",
  params: { billingAccountName: "12345678", invoiceName: "G123456789" },
  labels: { source: "node-example" },
};

// What the events' ce-dataschema names: each schema's $id.
const schemaDir = new URL("../../pkg/messages/schema/", import.meta.url);
const schemas = Object.fromEntries(
  ["completed", "failed"].map((name) => {
    const s = JSON.parse(readFileSync(new URL(`${name}.schema.json`, schemaDir), "utf8"));
    return [s.$id, s];
  }),
);

const jc = JSONCodec();
const nc = await connect({ servers: url, name: "billing-node-example" });
const timer = setTimeout(() => {
  console.error(`no event for ${id} within ${timeoutMs} ms`);
  process.exit(3);
}, timeoutMs);

// Watch first, then submit, so the event cannot be missed: both outcomes of
// this one request, <prefix>.events.<completed|failed>.<kind>.<id>.
const sub = nc.subscribe(`${prefix}.events.*.*.${id}`);

// A JetStream publish: the ack says the work stream has the request. The
// Nats-Msg-Id, <id>:<digest of kind, profile and params> (docs/contract.md,
// "The message id"), makes an identical resubmission within the duplicate
// window a no-op, while a reuse of the id with other content still reaches
// the worker, which refuses it with id_conflict.
const js = nc.jetstream();
const h = headers();
h.set("Nats-Msg-Id", dedupID(request));
const ack = await js.publish(`${prefix}.requests.${request.kind}`, jc.encode(request), { headers: h });
console.log(`submitted ${id} (stream ${ack.stream}, seq ${ack.seq}${ack.duplicate ? ", duplicate" : ""})`);

let status = 3;
for await (const m of sub) {
  const outcome = m.headers?.get("Billing-Outcome");
  const event = jc.decode(m.data);
  // CloudEvents attributes, binary content mode.
  const ce = Object.fromEntries(
    ["ce-specversion", "ce-id", "ce-type", "ce-source", "ce-time", "ce-dataschema", "content-type"].map((k) => [k, m.headers?.get(k)]),
  );
  const schema = schemas[ce["ce-dataschema"]];
  const missing = schema ? schema.required.filter((f) => !(f in event)) : ["(unknown ce-dataschema)"];
  console.log(`${m.subject}  ${ce["ce-type"]}  id=${ce["ce-id"]} time=${ce["ce-time"]} source=${ce["ce-source"]}`);
  console.log(JSON.stringify(event, null, 2));
  if (ce["ce-specversion"] !== "1.0" || missing.length > 0) {
    console.error(`not the contract: specversion ${ce["ce-specversion"]}, missing ${missing.join(", ")}`);
    status = 1;
  } else if (outcome === "completed") {
    status = 0;
  } else {
    console.error(`failed: ${event.code}: ${event.message}`);
    status = 1;
  }
  break;
}
clearTimeout(timer);
await nc.close();
process.exit(status);
