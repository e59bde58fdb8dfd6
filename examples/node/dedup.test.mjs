// node --test: dedup.mjs computes the message ids of docs/contract.md's
// test vectors, and their canonical forms byte for byte.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { canonical, dedupID } from "./dedup.mjs";

function vectors() {
  const doc = readFileSync(new URL("../../docs/contract.md", import.meta.url), "utf8");
  const start = doc.indexOf("<!-- dedup vectors -->");
  const end = doc.indexOf("<!-- /dedup vectors -->");
  assert.ok(start >= 0 && end > start, "docs/contract.md has no dedup vectors block");
  return doc
    .slice(start, end)
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l));
}

test("the vectors of docs/contract.md", () => {
  const vs = vectors();
  assert.ok(vs.length >= 4, `only ${vs.length} vectors`);
  for (const v of vs) {
    assert.equal(canonical(v.request), v.canonical, JSON.stringify(v.request));
    assert.equal(dedupID(v.request), v.msgId, JSON.stringify(v.request));
  }
});

test("what is not the operation does not count", () => {
  const a = { version: 1, id: "r1", kind: "invoice-summary", params: { billingAccountName: "12345678", invoiceName: "G123456789" } };
  const b = { ...a, labels: { x: "y" }, deadline: "2030-01-01T00:00:00Z", archive: false, params: { invoiceName: "G123456789", billingAccountName: "12345678", documents: [] } };
  assert.equal(dedupID(a), dedupID(b));
  assert.notEqual(dedupID(a), dedupID({ ...a, profile: "contoso" }));
});

test("a lone surrogate is written as U+FFFD, as a JSON reader in Go reads it", () => {
  const r = { kind: "account-document", params: { documentName: "a\ud800b" } };
  assert.equal(canonical(r), '{"kind":"account-document","profile":"","params":{"documentName":"a\ufffdb"}}\n');
});

test("an unknown parameter is refused", () => {
  assert.throws(() => dedupID({ id: "r1", kind: "invoice", params: { colour: "red" } }), TypeError);
});
