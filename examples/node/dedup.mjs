// The recommended Nats-Msg-Id of a request, <id>:<digest>, computed as
// docs/contract.md ("The message id") specifies it. dedup.test.mjs holds
// this code to the test vectors of that page.
import { createHash } from "node:crypto";

const idRule = /^[A-Za-z0-9_-]{1,128}$/;

// The params, in the order the canonical form writes them.
const stringParams = new Set(["subscriptionId", "billingAccountName", "billingProfileName", "invoiceName", "downloadToken", "documentName", "periodStartDate", "periodEndDate"]);
const paramOrder = ["subscriptionId", "billingAccountName", "billingProfileName", "invoiceName", "downloadToken", "documents", "documentName", "periodStartDate", "periodEndDate", "documentKinds"];

// str writes s as a string of the canonical form: JSON.stringify's escapes
// (\" \\ \b \f \n \r \t, \u00xx for the other control characters), and
// <, >, &, U+2028 and U+2029 as \u escapes too; a lone surrogate becomes
// U+FFFD first. Everything else stays as it is.
function str(s, where) {
  if (typeof s !== "string") throw new TypeError(`${where} must be a string`);
  return JSON.stringify(s.toWellFormed()).replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

const empty = (v) => v === undefined || v === null || v === "" || (Array.isArray(v) && v.length === 0);

function list(v, where) {
  if (!Array.isArray(v)) throw new TypeError(`${where} must be an array`);
  return v;
}

// canonical returns the canonical form of a request's kind, profile and
// params, as a string (its UTF-8 bytes are what is hashed).
export function canonical(request) {
  const params = request.params ?? {};
  for (const k of Object.keys(params)) {
    if (!paramOrder.includes(k)) throw new TypeError(`params.${k} is not a request parameter`);
  }
  const parts = [];
  for (const k of paramOrder) {
    const v = params[k];
    if (empty(v)) continue;
    if (stringParams.has(k)) {
      parts.push(`${str(k)}:${str(v, `params.${k}`)}`);
    } else if (k === "documents") {
      const docs = list(v, "params.documents").map((d, i) => {
        const name = empty(d?.documentName) ? "" : `"documentName":${str(d.documentName, `params.documents[${i}].documentName`)},`;
        return `{${name}"invoiceName":${str(d?.invoiceName ?? "", `params.documents[${i}].invoiceName`)}}`;
      });
      parts.push(`"documents":[${docs.join(",")}]`);
    } else {
      const kinds = list(v, "params.documentKinds").map((s, i) => str(s, `params.documentKinds[${i}]`));
      parts.push(`"documentKinds":[${kinds.join(",")}]`);
    }
  }
  return `{"kind":${str(request.kind ?? "", "kind")},"profile":${str(request.profile ?? "", "profile")},"params":{${parts.join(",")}}}\n`;
}

// dedupID returns the Nats-Msg-Id to publish request with.
export function dedupID(request) {
  const id = typeof request.id === "string" && idRule.test(request.id) ? request.id : "~invalid";
  const digest = createHash("sha256").update(canonical(request), "utf8").digest("hex").slice(0, 16);
  return `${id}:${digest}`;
}
