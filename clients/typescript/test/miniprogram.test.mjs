// @ts-check
// The sample mini-program's pages (clients/miniprogram), run in node through a small `wx`
// shim against the live server. The pages use the mini-program's SDK bundle, which must
// work without fetch, Headers, Request and Response: they are removed from this process
// before the pages load (node's own fetch, kept aside, is the shim's network).
import assert from "node:assert/strict";
import { randomInt } from "node:crypto";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "../../miniprogram");
const require = createRequire(join(root, "app.js"));
const network = globalThis.fetch;
const g = /** @type {Record<string, unknown>} */ (/** @type {unknown} */ (globalThis));
for (const name of ["fetch", "Headers", "Request", "Response", "FormData"]) delete g[name];

const baseUrl = process.env.LOYALTY_API_URL ?? "";
const seed = JSON.parse((await import("node:fs")).readFileSync(process.env.SDK_SEED ?? "", "utf8"));

/** What the shim recorded: navigation and toasts. */
const calls = { reLaunch: /** @type {string[]} */ ([]), navigateTo: /** @type {string[]} */ ([]), toasts: /** @type {string[]} */ ([]) };
/** Requests whose answers the shim drops (the server got them): a predicate on url and method. */
let dropAnswer = (/** @type {string} */ _url, /** @type {string} */ _method) => false;
const storage = new Map();
const user = { code: `mp-${process.pid}`, phone: `137${String(randomInt(0, 1e8)).padStart(8, "0")}` };

const wx = {
  request(/** @type {any} */ options) {
    network(options.url, { method: options.method, headers: options.header, body: options.data }).then(
      async (response) => {
        const text = await response.text();
        if (dropAnswer(options.url, options.method)) {
          options.fail({ errMsg: "request:fail timeout" });
          return;
        }
        /** @type {Record<string, string>} */
        const header = {};
        response.headers.forEach((value, name) => (header[name] = value));
        options.success({ statusCode: response.status, data: text, header });
      },
      (error) => options.fail({ errMsg: `request:fail ${error.message}` }),
    );
  },
  login(/** @type {any} */ options) {
    setTimeout(() => options.success({ code: user.code }), 0);
  },
  getStorageSync: (/** @type {string} */ key) => (storage.has(key) ? structuredClone(storage.get(key)) : ""),
  setStorageSync: (/** @type {string} */ key, /** @type {unknown} */ value) => storage.set(key, structuredClone(value)),
  removeStorageSync: (/** @type {string} */ key) => storage.delete(key),
  getSystemInfoSync: () => ({ language: "zh_CN" }),
  reLaunch: (/** @type {{url: string}} */ { url }) => calls.reLaunch.push(url),
  navigateTo: (/** @type {{url: string}} */ { url }) => calls.navigateTo.push(url),
  showToast: (/** @type {{title: string}} */ { title }) => calls.toasts.push(title),
};
const app = { globalData: { baseUrl } };
/** @type {any} */
let registered = null;
Object.assign(g, { wx, getApp: () => app, App: () => undefined, Page: (/** @type {any} */ config) => (registered = config) });

/** A page as the mini-program runtime makes it: its config object, with data and setData. */
function openPage(/** @type {string} */ name) {
  const path = require.resolve(`./pages/${name}/index.js`);
  delete require.cache[path];
  require(path);
  const page = Object.create(registered);
  page.data = structuredClone(registered.data);
  page.setData = (/** @type {Record<string, unknown>} */ changes) => Object.assign(page.data, changes);
  return page;
}

/** @type {typeof import("@loyalty/sdk/wx")} */
const sdk = require(join(root, "lib/loyalty-sdk.js"));

/**
 * What a scanner reads from Interleaved 2 of 5 bars: after the start (four narrow), each pair
 * of digits is five bars (the first digit) interleaved with five spaces (the second); in each
 * five, the two wide ones' weights (1, 2, 4, 7, 0) add up to the digit (11 is 0).
 * @param {{black: boolean, width: number}[]} bars
 */
function readInterleaved2of5(bars) {
  const widths = bars.map((bar) => bar.width);
  assert.deepEqual(widths.slice(0, 4), [1, 1, 1, 1], "start");
  assert.deepEqual(widths.slice(-3), [3, 1, 1], "stop");
  assert.ok(bars.every((bar, index) => bar.black === (index % 2 === 0)));
  const weights = [1, 2, 4, 7, 0];
  const digit = (/** @type {number[]} */ five) => {
    assert.equal(five.filter((w) => w > 1).length, 2, "two wide of five");
    const sum = five.reduce((total, w, k) => total + (w > 1 ? weights[k] : 0), 0);
    return String(sum === 11 ? 0 : sum);
  };
  let digits = "";
  for (let i = 4; i < widths.length - 3; i += 10) {
    const group = widths.slice(i, i + 10);
    digits += digit(group.filter((_, k) => k % 2 === 0)) + digit(group.filter((_, k) => k % 2 === 1));
  }
  return digits;
}
const till = sdk.createWxTillClient({ baseUrl, wx, apiKey: seed.store_key });

test("the mini-program: sign in with the phone button, card, history, mall and redeem, coupons", async () => {
  // sign in: a new WeChat user is asked for the phone number
  const login = openPage("login");
  login.onLoad();
  assert.equal(login.data.t.signIn, "微信一键登录"); // the WeChat client's language
  await login.onSignIn();
  assert.equal(login.data.needPhone, true);
  assert.equal(login.data.error, "");
  await login.onPhoneNumber({ detail: {} }); // the user declined
  assert.equal(login.data.error, login.data.t.phoneRefused);
  await login.onPhoneNumber({ detail: { code: user.phone } });
  assert.deepEqual(calls.reLaunch, ["/pages/card/index"]);
  assert.match(wx.getStorageSync("loyalty.tokens").access, /^at_/);

  // the card, after three orders at the till
  const card = openPage("card");
  await card.onShow();
  assert.equal(card.data.error, "");
  assert.equal(card.data.points, 0);
  const memberNumber = card.data.memberNumber;
  const occurred_at = new Date(Date.now() - 10 * 86400_000).toISOString();
  for (const [n, amount] of Object.entries(["100.00", "150.00", "250.00"])) {
    await sdk.ok(
      till.POST("/api/v1/pos/orders/", {
        body: { member_number: memberNumber, number: `MP-${process.pid}-${n}`, amount, occurred_at },
      }),
    );
  }
  await card.onShow();
  assert.equal(card.data.points, 500);
  // the bars read as the member number (decoded here by the 2 of 5 weights), which finds the member at the till
  const scannedCode = readInterleaved2of5(card.data.bars);
  assert.equal(scannedCode, memberNumber);
  const scanned = await sdk.ok(
    till.GET("/api/v1/pos/members/lookup/", { params: { query: { card_code: scannedCode } } }),
  );
  assert.equal(scanned.member_number, memberNumber);

  // history, two entries a page would need a cursor: follow it to the end
  const history = openPage("history");
  await history.onLoad();
  assert.equal(history.data.error, "");
  assert.deepEqual(
    history.data.entries.map((/** @type {{amount: number}} */ entry) => entry.amount),
    [250, 150, 100],
  );
  assert.equal(history.data.done, true);

  // the mall: the first tap's answers are all lost (the server did get the redemption)
  const mall = openPage("mall");
  await mall.onLoad();
  const reward = mall.data.rewards.find((/** @type {{id: number}} */ offer) => offer.id === seed.rewards[0].id);
  assert.ok(reward && reward.eligible);
  dropAnswer = (url, method) => method === "POST" && url.includes("/redeem/");
  const lost = await mall.onRedeem({ currentTarget: { dataset: { id: String(reward.id) } } });
  assert.equal(lost, null);
  assert.equal(mall.data.error, mall.data.t.retry);
  dropAnswer = () => false;
  // the member taps again: the same action, so the server answers with the first redemption
  const redemption = await mall.onRedeem({ currentTarget: { dataset: { id: String(reward.id) } } });
  assert.ok(redemption);
  assert.equal(mall.data.error, "");
  assert.equal(mall.data.points, 500 - reward.points_cost); // charged once
  assert.deepEqual(calls.toasts, [mall.data.t.redeemed]);

  // a refusal ends the action: not enough points for the dearer reward, in Chinese
  const dear = seed.rewards[1];
  await sdk.ok(till.POST("/api/v1/pos/adjustments/", { body: { member_number: memberNumber, amount: -300, reason: "sdk test" } }));
  const refused = await mall.onRedeem({ currentTarget: { dataset: { id: String(dear.id) } } });
  assert.equal(refused, null);
  assert.match(mall.data.error, /[\u4e00-\u9fff]/);
  assert.deepEqual(Object.keys(mall.actions), []);

  // my coupons: the one redemption
  const coupons = openPage("coupons");
  await coupons.onShow();
  assert.deepEqual(
    coupons.data.coupons.map((/** @type {{code: string}} */ coupon) => coupon.code),
    [redemption.coupon.code],
  );
});
