/**
 * The SDK in a WeChat mini-program: fetch over `wx.request`, tokens in `wx` storage, the
 * language from the WeChat client, and `wx.login` as a promise. The mini-program bundle
 * (`clients/miniprogram/lib/loyalty-sdk.js`, made by `make sdk`) is this module with the
 * whole SDK inside.
 */
import {
  type ClientOptions,
  createMemberClient,
  createTillClient,
  type Language,
  type LoyaltyClient,
  type MemberClientOptions,
  type TokenStore,
  type Tokens,
} from "./index";

export * from "./index";

/** The part of the `wx` object the SDK uses (the real one, or a test's shim). */
export interface Wx {
  request(options: {
    url: string;
    method: string;
    header: Record<string, string>;
    data?: string;
    dataType: string;
    responseType: string;
    success(res: { statusCode: number; data: unknown; header: Record<string, string> }): void;
    fail(err: { errMsg: string }): void;
  }): void;
  login(options: { success(res: { code: string }): void; fail(err: { errMsg: string }): void }): void;
  getStorageSync(key: string): unknown;
  setStorageSync(key: string, value: unknown): void;
  removeStorageSync(key: string): void;
  getSystemInfoSync?(): { language?: string };
}

/** A fetch that sends through wx.request (the mini-program has no fetch). */
export function wxFetch(wx: Wx): (request: Request) => Promise<Response> {
  return async (request) => {
    const header: Record<string, string> = {};
    request.headers.forEach((value, name) => {
      header[name] = value;
    });
    const body = await request.text();
    return new Promise<Response>((resolve, reject) => {
      wx.request({
        url: request.url,
        method: request.method,
        header,
        ...(body ? { data: body } : {}),
        dataType: "text", // we parse JSON ourselves, as fetch would
        responseType: "text",
        success(res) {
          const text = typeof res.data === "string" ? res.data : JSON.stringify(res.data);
          resolve(new Response(text, { status: res.statusCode, headers: res.header }));
        },
        // A network failure: like fetch, a TypeError, which `retrying` retries with the same key.
        fail(err) {
          reject(new TypeError(err.errMsg));
        },
      });
    });
  };
}

/** Tokens kept in the mini-program's storage, so a member stays signed in across launches. */
export function wxTokenStore(wx: Wx, key = "loyalty.tokens"): TokenStore {
  return {
    get: () => (wx.getStorageSync(key) as Tokens | "") || null,
    set: (tokens) => (tokens ? wx.setStorageSync(key, tokens) : wx.removeStorageSync(key)),
  };
}

/** The WeChat client's language as the API's: zh_CN, zh_TW, zh_HK -> zh-hans; anything else -> en. */
export function wxLanguage(wx: Wx): Language {
  const language = wx.getSystemInfoSync?.().language ?? "";
  return language.toLowerCase().startsWith("zh") ? "zh-hans" : "en";
}

/** A `wx.login()` code, to send to /api/v1/auth/miniprogram/. */
export function wxLoginCode(wx: Wx): Promise<string> {
  return new Promise((resolve, reject) => {
    wx.login({ success: (res) => resolve(res.code), fail: (err) => reject(new Error(err.errMsg)) });
  });
}

/** The member client of a mini-program. */
export function createWxMemberClient(
  options: Omit<MemberClientOptions, "fetch" | "Request" | "tokens"> & { wx: Wx; tokens?: TokenStore },
): LoyaltyClient & { tokens: TokenStore } {
  const { wx, ...rest } = options;
  return createMemberClient({
    language: () => wxLanguage(wx),
    ...rest,
    tokens: options.tokens ?? wxTokenStore(wx),
    fetch: wxFetch(wx),
    Request,
  });
}

/** A till client inside a mini-program (a staff mini-program scanning member codes, verifying coupons). */
export function createWxTillClient(
  options: Omit<ClientOptions, "fetch" | "Request"> & { wx: Wx; apiKey: string },
): LoyaltyClient {
  const { wx, ...rest } = options;
  return createTillClient({ ...rest, fetch: wxFetch(wx), Request });
}
