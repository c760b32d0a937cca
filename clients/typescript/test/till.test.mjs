// @ts-check
// The till flows of a shop system with a store key, with the SDK alone.
import assert from "node:assert/strict";
import { test } from "node:test";
import { ConflictError, KeyReusedError, NotFoundError, UserAction, ok, replayed, retrying } from "@loyalty/sdk";
import { seed, signedInMember, till } from "./helpers.mjs";

test("look a member up by the card's code, earn, pay with points, refund part", async () => {
  const { memberNumber } = await signedInMember();
  const found = await ok(till.GET("/api/v1/pos/members/lookup/", { params: { query: { card_code: memberNumber } } }));
  assert.equal(found.member_number, memberNumber);
  assert.equal(found.balances.points.balance, 0);
  await assert.rejects(
    ok(till.GET("/api/v1/pos/members/lookup/", { params: { query: { card_code: "80000000000" } } })),
    (error) => error instanceof NotFoundError && error.status === 404,
  );

  const occurred_at = new Date(Date.now() - 10 * 86400_000).toISOString();
  const order = { member_number: memberNumber, number: `T-${process.pid}-1`, amount: "200.00", occurred_at };
  const earned = await till.POST("/api/v1/pos/orders/", { body: order });
  assert.equal(earned.response.status, 201);
  const first = await ok(earned);
  assert.equal(first.replayed, false);
  assert.equal(first.earned.find((line) => line.currency === "points")?.amount, 200);
  // a resend of the same order number is the first result, not a second earn
  const resent = await ok(till.POST("/api/v1/pos/orders/", { body: order }));
  assert.equal(resent.replayed, true);
  await assert.rejects(
    ok(till.POST("/api/v1/pos/orders/", { body: { ...order, amount: "999.00" } })),
    (error) => error instanceof KeyReusedError && error.code === "order_number_taken",
  );

  const quote = await ok(
    till.POST("/api/v1/pos/checkout/quote/", { body: { member_number: memberNumber, order_total: "30.00" } }),
  );
  assert.equal(quote.balance, 200);
  assert.ok(quote.max_points > 0 && quote.max_points <= 200);
  const checkout = await ok(
    till.POST("/api/v1/pos/checkout/", {
      body: { member_number: memberNumber, number: `T-${process.pid}-2`, amount: "30.00", points: 50 },
    }),
  );
  assert.equal(checkout.points_used, 50);
  assert.equal(checkout.points_value, "0.50");

  // half of the first order comes back: half its points go
  const refund = await ok(
    till.POST("/api/v1/pos/refunds/", {
      body: { order_number: order.number, number: "R-1", amount: "100.00", reason: "one item returned" },
    }),
  );
  assert.equal(refund.taken_back.find((line) => line.currency === "points")?.amount, -100);
  assert.equal(refund.points_shortfall, 0);
  assert.equal(refund.order_status, "partially_refunded");
  const after = await ok(till.GET("/api/v1/pos/members/lookup/", { params: { query: { member_number: memberNumber } } }));
  // 200 earned, 50 paid at the checkout (whose own points wait for its return window), 100 taken back
  assert.equal(after.balances.points.balance, 50);
  assert.equal(after.balances.points.pending, checkout.earned.find((line) => line.currency === "points")?.pending_amount);
});

test("a coupon verified twice: the second is a typed 409 coupon_used; a retry with the key replays", async () => {
  const { client, memberNumber } = await signedInMember();
  const occurred_at = new Date(Date.now() - 10 * 86400_000).toISOString();
  await ok(
    till.POST("/api/v1/pos/orders/", {
      body: { member_number: memberNumber, number: `C-${process.pid}`, amount: "300.00", occurred_at },
    }),
  );
  const redeem = new UserAction();
  const redemption = await ok(
    retrying(redeem, (header) =>
      client.POST("/api/v1/rewards/{id}/redeem/", { params: { path: { id: seed.rewards[0].id }, header } }),
    ),
  );
  const code = redemption.coupon.code;

  const verify = new UserAction();
  const used = await ok(
    retrying(verify, (header) => till.POST("/api/v1/pos/coupons/verify/", { body: { code }, params: { header } })),
  );
  assert.equal(used.status, "used");
  assert.equal(used.member_number, memberNumber);
  assert.equal(used.used_store, seed.store);
  // the till's retry of that same verification (same key) is its first answer
  const retried = await till.POST("/api/v1/pos/coupons/verify/", { body: { code }, params: { header: verify.header } });
  assert.ok(replayed(retried));
  assert.equal((await ok(retried)).status, "used");
  // another verification of the same coupon is refused
  await assert.rejects(ok(till.POST("/api/v1/pos/coupons/verify/", { body: { code } })), (error) => {
    assert.ok(error instanceof ConflictError, `expected a ConflictError, got ${error}`);
    assert.equal(error.status, 409);
    assert.equal(error.code, "coupon_used");
    assert.ok(error.message.length > 0);
    return true;
  });
  const mine = await ok(client.GET("/api/v1/me/coupons/"));
  assert.ok(!mine.some((coupon) => coupon.code === code && coupon.status === "issued"));
});
