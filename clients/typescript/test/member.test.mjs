// @ts-check
// The member flows of a mini-program, with the SDK alone: every call names a path of the schema.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  BadRequestError,
  ConflictError,
  KeyReusedError,
  MemoryTokenStore,
  NotAuthenticatedError,
  UserAction,
  createMemberClient,
  ok,
  pages,
  replayed,
  retrying,
} from "@loyalty/sdk";
import { conformingFetch } from "./conformance.mjs";
import { baseUrl, earn, newcomer, seed, signedInMember } from "./helpers.mjs";

describe("sign-in", () => {
  test("a new mini-program user is asked for a phone, then signs in and the tokens are stored", async () => {
    const tokens = new MemoryTokenStore();
    const client = createMemberClient({ baseUrl, tokens, language: "en", fetch: conformingFetch() });
    const { code, phone } = newcomer();
    await assert.rejects(ok(client.POST("/api/v1/auth/miniprogram/", { body: { code } })), (error) => {
      assert.ok(error instanceof BadRequestError);
      assert.equal(error.status, 400);
      assert.equal(error.code, "phone_required");
      return true;
    });
    assert.equal(tokens.get(), null);
    const signedIn = await ok(client.POST("/api/v1/auth/miniprogram/", { body: { code, phone_code: phone } }));
    assert.match(tokens.get()?.access ?? "", /^at_/);
    assert.equal(tokens.get()?.refresh, signedIn.refresh);
    const me = await ok(client.GET("/api/v1/me/"));
    assert.equal(me.member_number, signedIn.member_number);
    // the same WeChat user again: no phone needed
    const again = await ok(client.POST("/api/v1/auth/miniprogram/", { body: { code } }));
    assert.equal(again.member_number, signedIn.member_number);
    // signing out ends the sign-in on the server and forgets the tokens here
    const spent = tokens.get();
    const signOut = await client.POST("/api/v1/auth/sign-out/");
    assert.equal(signOut.response.status, 204);
    assert.equal(tokens.get(), null);
    const afterSignOut = await client.POST("/api/v1/auth/refresh/", { body: { refresh: spent?.refresh ?? "" } });
    assert.equal(afterSignOut.response.status, 401);
  });

  test("an expired access token is refreshed once for calls made together, and the refresh token rotates", async () => {
    let refreshes = 0;
    const { client, tokens } = await signedInMember({
      fetch: (/** @type {Request} */ request) => {
        if (new URL(request.url).pathname.endsWith("/auth/refresh/")) refreshes += 1;
        return fetch(request);
      },
    });
    const before = tokens.get();
    assert.ok(before);
    tokens.set({ ...before, access_expires_at: new Date(Date.now() - 1000).toISOString() });
    const answers = await Promise.all([
      ok(client.GET("/api/v1/me/balances/")),
      ok(client.GET("/api/v1/me/tier/")),
      ok(client.GET("/api/v1/me/")),
    ]);
    assert.equal(answers.length, 3);
    assert.equal(refreshes, 1);
    const after = tokens.get();
    assert.notEqual(after?.access, before.access);
    assert.notEqual(after?.refresh, before.refresh);
    // the used refresh token is spent: the server refuses it (and would end the sign-in)
    const reuse = await client.POST("/api/v1/auth/refresh/", { body: { refresh: before.refresh } });
    assert.equal(reuse.response.status, 401);
  });

  test("a token the server no longer takes is refreshed and the call sent again", async () => {
    const { client, tokens } = await signedInMember();
    const current = tokens.get();
    assert.ok(current);
    tokens.set({ ...current, access: "at_not-a-token" });
    const me = await ok(client.PATCH("/api/v1/me/", { body: { name: "Retried" } }));
    assert.equal(me.name, "Retried");
    assert.notEqual(tokens.get()?.access, "at_not-a-token");
  });
});

describe("a member's points", () => {
  test("balances, history page by page, the expiry calendar", async () => {
    const { client, memberNumber } = await signedInMember();
    for (const amount of ["100.00", "200.00", "300.00"]) await earn(memberNumber, amount);
    const balances = await ok(client.GET("/api/v1/me/balances/"));
    assert.equal(balances.points.balance, 600);
    assert.equal(balances.points.pending, 0);

    const seen = [];
    let pageCount = 0;
    for await (const page of pages((cursor) =>
      client.GET("/api/v1/me/entries/", { params: { query: { currency: "points", page_size: 2, cursor } } }),
    )) {
      pageCount += 1;
      assert.ok(page.results.length <= 2);
      seen.push(...page.results);
    }
    assert.equal(pageCount, 2);
    assert.deepEqual(
      seen.map((entry) => entry.amount),
      [300, 200, 100],
    );
    assert.equal(new Set(seen.map((entry) => entry.id)).size, 3);
    assert.ok(seen.every((entry) => entry.kind === "earn"));

    const calendar = await ok(client.GET("/api/v1/me/expiry-calendar/"));
    const expiring = calendar.expiring.reduce((sum, bucket) => sum + bucket.amount, 0);
    assert.equal(calendar.currency, "points");
    assert.equal(expiring, 600);
    assert.deepEqual(calendar.pending, []);
  });

  test("a redeem whose answer was lost is retried with the same key and replays: charged once", async () => {
    const reward = seed.rewards[0];
    let dropped = 0;
    const { client, memberNumber } = await signedInMember({
      // The server gets the first redemption and answers, but the answer never arrives.
      fetch: async (/** @type {Request} */ request) => {
        const response = await fetch(request);
        if (request.method === "POST" && request.url.includes("/redeem/") && dropped === 0) {
          dropped += 1;
          throw new TypeError("network connection lost");
        }
        return response;
      },
    });
    await earn(memberNumber, "500.00");
    const action = new UserAction();
    const result = await retrying(
      action,
      (header) => client.POST("/api/v1/rewards/{id}/redeem/", { params: { path: { id: reward.id }, header } }),
      { delayMs: () => 10 },
    );
    assert.equal(dropped, 1);
    assert.equal(result.response.status, 201);
    assert.ok(replayed(result), "the retry should be answered from the first request");
    const redemption = await ok(result);
    assert.equal(redemption.reward_id, reward.id);
    assert.equal((await ok(client.GET("/api/v1/me/balances/"))).points.balance, 500 - reward.points_cost);

    // the user's own second tap of the same action: the same answer, nothing more spent
    const again = await client.POST("/api/v1/rewards/{id}/redeem/", {
      params: { path: { id: reward.id }, header: action.header },
    });
    assert.equal((await ok(again)).id, redemption.id);
    // the same key for another reward is refused: a key names one request
    await assert.rejects(
      ok(
        client.POST("/api/v1/rewards/{id}/redeem/", {
          params: { path: { id: seed.rewards[1].id }, header: action.header },
        }),
      ),
      (error) => error instanceof KeyReusedError && error.status === 422 && error.code === "idempotency_key_reused",
    );
    const coupons = await ok(client.GET("/api/v1/me/coupons/"));
    assert.deepEqual(
      coupons.map((coupon) => coupon.code),
      [redemption.coupon.code],
    );
    const rewards = await ok(client.GET("/api/v1/rewards/", { params: { query: { eligible: true } } }));
    assert.ok(rewards.every((offer) => offer.eligible && offer.points_cost <= 400));
  });

  test("check-in once a day; profile update; messages in the request's language", async () => {
    const { client } = await signedInMember();
    const checkIn = await client.POST("/api/v1/me/check-in/", {
      params: { header: new UserAction().header },
    });
    assert.equal(checkIn.response.status, 201);
    assert.equal((await ok(checkIn)).streak, 1);
    await assert.rejects(
      ok(client.POST("/api/v1/me/check-in/", { params: { header: new UserAction().header } })),
      (error) => error instanceof ConflictError && error.code === "already_checked_in",
    );
    const status = await ok(client.GET("/api/v1/me/check-in/"));
    assert.equal(status.checked_in_today, true);

    const me = await ok(client.PATCH("/api/v1/me/", { body: { name: "Li Lei", birthday: "1990-05-04" } }));
    assert.equal(me.name, "Li Lei");
    assert.equal(me.birthday_locked, true);
    await assert.rejects(ok(client.PATCH("/api/v1/me/", { body: { birthday: "1991-01-01" } })), (error) => {
      assert.ok(error instanceof ConflictError);
      assert.equal(error.code, "birthday_locked");
      assert.doesNotMatch(error.message, /[\u4e00-\u9fff]/);
      return true;
    });
    const chinese = createMemberClient({ baseUrl, tokens: client.tokens, language: "zh-hans", fetch: conformingFetch() });
    await assert.rejects(ok(chinese.PATCH("/api/v1/me/", { body: { birthday: "1991-01-01" } })), (error) => {
      assert.ok(error instanceof ConflictError);
      assert.equal(error.code, "birthday_locked");
      assert.match(error.message, /[\u4e00-\u9fff]/);
      return true;
    });
  });

  test("erasure ends the sign-in: the next call is a typed 401 and the tokens are gone", async () => {
    let signedOut = 0;
    const { client, tokens } = await signedInMember({ onSignedOut: () => (signedOut += 1) });
    await assert.rejects(
      ok(client.POST("/api/v1/me/erase/", { body: { confirm: "yes" } })),
      (error) => error instanceof BadRequestError,
    );
    const erased = await client.POST("/api/v1/me/erase/", { body: { confirm: "ERASE" } });
    assert.ok(erased.response.ok, `erase answered ${erased.response.status}`);
    await assert.rejects(ok(client.GET("/api/v1/me/")), (error) => error instanceof NotAuthenticatedError);
    assert.equal(tokens.get(), null);
    assert.equal(signedOut, 1);
  });
});
