// @ts-check
// Every answer the contract tests get is checked against the committed schema (openapi.json):
// its status is one the operation lists, and a JSON body has the listed shape (required
// properties, no undeclared ones, types, nulls, enums). A mismatch is a schema gap to fix in api/.
import { readFileSync } from "node:fs";

const schema = JSON.parse(readFileSync(new URL("../openapi.json", import.meta.url), "utf8"));
const routes = Object.entries(schema.paths).map(([path, item]) => ({
  pattern: new RegExp("^" + path.replace(/\{[^}]+\}/g, "[^/]+") + "$"),
  path,
  item: /** @type {Record<string, any>} */ (item),
}));

/** @param {any} node */
function deref(node) {
  while (node && node.$ref) node = node.$ref.split("/").slice(1).reduce((/** @type {any} */ o, /** @type {string} */ k) => o[k], schema);
  return node;
}

/**
 * The ways `value` differs from `node` (a JSON schema of the OpenAPI document), as paths.
 * @param {any} value @param {any} node @param {string} at @returns {string[]}
 */
function mismatches(value, node, at) {
  node = deref(node);
  if (!node) return [];
  if (value === null) return node.nullable ? [] : [`${at} is null`];
  if (node.allOf) return node.allOf.flatMap((/** @type {any} */ part) => mismatches(value, part, at));
  if (node.oneOf || node.anyOf) {
    const options = node.oneOf ?? node.anyOf;
    return options.some((/** @type {any} */ option) => mismatches(value, option, at).length === 0) ? [] : [`${at} fits none of its options`];
  }
  if (node.enum && !node.enum.includes(value)) return [`${at} = ${JSON.stringify(value)} is not one of ${node.enum}`];
  const type = node.type ?? (node.properties ? "object" : undefined);
  if (type === "object") {
    if (typeof value !== "object" || Array.isArray(value)) return [`${at} is not an object`];
    const found = [];
    for (const key of node.required ?? []) if (!(key in value)) found.push(`${at}.${key} is missing`);
    for (const [key, item] of Object.entries(value)) {
      const property = node.properties?.[key];
      if (property) found.push(...mismatches(item, property, `${at}.${key}`));
      else if (node.properties && !node.additionalProperties) found.push(`${at}.${key} is not in the schema`);
      else if (typeof node.additionalProperties === "object") found.push(...mismatches(item, node.additionalProperties, `${at}.${key}`));
    }
    return found;
  }
  if (type === "array") {
    if (!Array.isArray(value)) return [`${at} is not an array`];
    return value.flatMap((item, index) => mismatches(item, node.items, `${at}[${index}]`));
  }
  if (type === "integer") return Number.isInteger(value) ? [] : [`${at} is not an integer`];
  if (type === "number") return typeof value === "number" ? [] : [`${at} is not a number`];
  if (type === "string") return typeof value === "string" ? [] : [`${at} is not a string`];
  if (type === "boolean") return typeof value === "boolean" ? [] : [`${at} is not a boolean`];
  return [];
}

/** Gaps found so far, as "METHOD path status: detail"; the tests assert there are none. */
export const gaps = /** @type {string[]} */ ([]);

/**
 * A fetch that checks each answer against the schema.
 * @param {(request: Request) => Promise<Response>} inner
 */
export function conformingFetch(inner = (request) => fetch(request)) {
  return async (/** @type {Request} */ request) => {
    const response = await inner(request);
    const url = new URL(request.url);
    const route = routes.find((r) => r.pattern.test(url.pathname));
    const operation = route?.item[request.method.toLowerCase()];
    const label = `${request.method} ${url.pathname} ${response.status}`;
    if (!operation) {
      gaps.push(`${label}: no such operation in the schema`);
      return response;
    }
    const declared = operation.responses[String(response.status)];
    if (!declared) {
      gaps.push(`${label}: status not listed (${Object.keys(operation.responses)})`);
      return response;
    }
    const bodySchema = declared.content?.["application/json"]?.schema;
    const text = await response.clone().text();
    if (bodySchema && text) gaps.push(...mismatches(JSON.parse(text), bodySchema, "body").map((m) => `${label}: ${m}`));
    if (!bodySchema && text) gaps.push(`${label}: a body where the schema declares none`);
    return response;
  };
}
