// The README's examples, type-checked by scripts/sdk_check.sh (tsc) so they stay true; not run.
import { ConflictError, UserAction, createMemberClient, createTillClient, ok, retrying } from "@loyalty/sdk";

export async function memberExample(): Promise<void> {
  const api = createMemberClient({ baseUrl: "http://127.0.0.1:8000", language: "en" });
  await ok(api.POST("/api/v1/auth/miniprogram/", { body: { code: "demo" } })); // tokens kept
  const { points } = await ok(api.GET("/api/v1/me/balances/"));
  const [reward] = await ok(api.GET("/api/v1/rewards/", { params: { query: { eligible: true } } }));

  const tap = new UserAction(); // one per tap of "redeem"; keep it to retry
  const redemption = await ok(
    retrying(tap, (header) => api.POST("/api/v1/rewards/{id}/redeem/", { params: { path: { id: reward.id }, header } })),
  );
  console.log(points.balance, redemption.coupon.code);
}

export async function tillExample(): Promise<void> {
  const till = createTillClient({ baseUrl: "http://127.0.0.1:8000", apiKey: "sk_..." });
  const member = await ok(till.GET("/api/v1/pos/members/lookup/", { params: { query: { card_code: "8..." } } }));
  await ok(
    till.POST("/api/v1/pos/orders/", { body: { member_number: member.member_number, number: "A-1", amount: "128.00" } }),
  );
  try {
    await ok(till.POST("/api/v1/pos/coupons/verify/", { body: { code: "K7QX-M2PA-9RTB" } }));
  } catch (error) {
    if (error instanceof ConflictError && error.code === "coupon_used") {
      /* already used */
    }
  }
}

// What the types refuse: a path that is not in the schema, a missing required header, a wrong field.
export async function refusedByTheTypes(): Promise<void> {
  const api = createMemberClient({ baseUrl: "" });
  // @ts-expect-error no such path
  await api.GET("/api/v1/me/balance/");
  // @ts-expect-error the redeem needs its Idempotency-Key
  await api.POST("/api/v1/rewards/{id}/redeem/", { params: { path: { id: 1 } } });
  // @ts-expect-error amount is a decimal string
  await api.POST("/api/v1/pos/orders/", { body: { member_number: "8", number: "A", amount: 12 } });
}
