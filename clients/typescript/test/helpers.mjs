// @ts-check
// Shared by the contract tests: the live server's address (LOYALTY_API_URL) and what
// seed.py made (SDK_SEED), set by scripts/sdk_check.sh.
import { readFileSync } from "node:fs";
import { randomInt } from "node:crypto";
import { after } from "node:test";
import assert from "node:assert/strict";
import { BadRequestError, MemoryTokenStore, createMemberClient, createTillClient, ok } from "@loyalty/sdk";
import { conformingFetch, gaps } from "./conformance.mjs";

export const baseUrl = process.env.LOYALTY_API_URL ?? "";
if (!baseUrl) throw new Error("Run the contract tests with scripts/sdk_check.sh (it starts the server).");

/** @type {{store_key: string, store: string, other_store: string, rewards: {id: number, name: string, points_cost: number}[]}} */
export const seed = JSON.parse(readFileSync(process.env.SDK_SEED ?? "", "utf8"));

export const till = createTillClient({ baseUrl, apiKey: seed.store_key, language: "en", fetch: conformingFetch() });

// Every answer of every test file matched the schema.
after(() => assert.deepEqual(gaps, [], "answers that do not match the schema"));

let serial = 0;
/** A code and phone nobody has used yet. */
export function newcomer() {
  serial += 1;
  const tag = `${process.pid}-${serial}`;
  return { code: `sdk-${tag}`, phone: `139${String(randomInt(0, 1e8)).padStart(8, "0")}` };
}

/**
 * A member signed in through the mini-program flow (a new user binds a phone).
 * @param {Partial<import("@loyalty/sdk").MemberClientOptions>} options
 */
export async function signedInMember(options = {}) {
  const tokens = new MemoryTokenStore();
  const client = createMemberClient({ baseUrl, tokens, language: "en", ...options, fetch: conformingFetch(options.fetch) });
  const { code, phone } = newcomer();
  const first = await client.POST("/api/v1/auth/miniprogram/", { body: { code } });
  if (first.response.status !== 400) throw new Error("a new user without a phone should be refused");
  const signIn = await ok(client.POST("/api/v1/auth/miniprogram/", { body: { code, phone_code: phone } }));
  return { client, tokens, code, phone, memberNumber: signIn.member_number };
}

let orderSerial = 0;
/**
 * Points for a member through the till: an order from before the return window, so available now.
 * @param {string} memberNumber
 */
export async function earn(memberNumber, amount = "500.00") {
  orderSerial += 1;
  const occurred = new Date(Date.now() - 10 * 86400_000).toISOString();
  return ok(
    till.POST("/api/v1/pos/orders/", {
      body: { member_number: memberNumber, number: `E-${process.pid}-${orderSerial}`, amount, occurred_at: occurred },
    }),
  );
}

export { BadRequestError };
