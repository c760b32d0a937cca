/**
 * The loyalty API's TypeScript SDK.
 *
 * Everything the OpenAPI schema can say is generated: `schema.d.ts` (openapi-typescript)
 * types every path, parameter, body and answer, and openapi-fetch calls them. This file is
 * the thin layer the schema cannot express:
 *
 * - token storage and refresh rotation (a refresh token works once: refreshes are shared),
 * - an Idempotency-Key made once per user action and reused on every retry of it,
 * - the error shape `{"error": {code, message, fields}}` as a typed error, one class per status,
 * - the request's language (Accept-Language).
 */
import createClient, { type Client, type Middleware } from "openapi-fetch";
import type { components, operations, paths } from "./schema";
import { API_VERSION } from "./version";

export type { components, operations, paths };
export { API_VERSION };
export type Schemas = components["schemas"];
export type LoyaltyClient = Client<paths, "application/json">;

/** The languages the API answers in (messages, reward names, notices). */
export type Language = "en" | "zh-hans";

// --- errors ----------------------------------------------------------------------------------

/** Every refusal of the API: the status, the stable `code`, the message in the request's language. */
export class LoyaltyApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly fields: Record<string, string>;
  /** Seconds the server asked us to wait (429, 503), or null. */
  readonly retryAfter: number | null;
  readonly body: unknown;

  constructor(status: number, body: unknown, headers?: Headers) {
    const detail = errorDetail(body);
    super(detail?.message ?? `HTTP ${status}`);
    this.name = new.target.name;
    this.status = status;
    this.code = detail?.code ?? "http_" + status;
    this.fields = detail?.fields ?? {};
    const retryAfter = headers?.get("Retry-After");
    this.retryAfter = retryAfter && /^\d+$/.test(retryAfter) ? Number(retryAfter) : null;
    this.body = body;
  }
}
/** 400: bad input; `fields` names the wrong fields. */
export class BadRequestError extends LoyaltyApiError {}
/** 401: no, wrong or expired credentials (after a refresh was tried). */
export class NotAuthenticatedError extends LoyaltyApiError {}
/** 403: known caller, not allowed. */
export class ForbiddenError extends LoyaltyApiError {}
/** 404: absent, or not the caller's to see. */
export class NotFoundError extends LoyaltyApiError {}
/** 409: the state refuses it (coupon_used, insufficient_balance, idempotency_in_flight, ...). */
export class ConflictError extends LoyaltyApiError {}
/** 422: a key (Idempotency-Key, order or refund number) reused with another request. */
export class KeyReusedError extends LoyaltyApiError {}
/** 429: slow down; see `retryAfter`. */
export class RateLimitedError extends LoyaltyApiError {}
/** 503: the server or a platform it needs did not answer; retry the same action. */
export class UnavailableError extends LoyaltyApiError {}

const ERROR_CLASSES: Record<number, typeof LoyaltyApiError> = {
  400: BadRequestError,
  401: NotAuthenticatedError,
  403: ForbiddenError,
  404: NotFoundError,
  409: ConflictError,
  422: KeyReusedError,
  429: RateLimitedError,
  503: UnavailableError,
};

function errorDetail(body: unknown): Schemas["ErrorDetail"] | null {
  const detail = (body as Partial<Schemas["Error"]> | null)?.error;
  return detail && typeof detail === "object" && typeof detail.code === "string" ? detail : null;
}

/** The typed error for a response that is not 2xx. */
export function apiError(response: Response, body: unknown): LoyaltyApiError {
  const Class = ERROR_CLASSES[response.status] ?? LoyaltyApiError;
  return new Class(response.status, body, response.headers);
}

type Result = { data?: unknown; error?: unknown; response: Response };

/**
 * The data of a call, or its refusal thrown as a typed error:
 * `const balances = await ok(client.GET("/api/v1/me/balances/"))`.
 */
export async function ok<R extends Result>(call: R | Promise<R>): Promise<Exclude<R["data"], undefined>> {
  const result = await call;
  if (!result.response.ok) throw apiError(result.response, result.error);
  return result.data as Exclude<R["data"], undefined>;
}

/** Whether the server answered this from an earlier request with the same key (a replay). */
export function replayed(result: Result): boolean {
  return result.response.headers.get("Idempotent-Replayed") === "true";
}

// --- pages ---------------------------------------------------------------------------------

/** The `cursor` parameter of a list's `next` or `previous` link, to ask for that page. */
export function cursorOf(link: string | null | undefined): string | undefined {
  const match = link ? /[?&]cursor=([^&#]*)/.exec(link) : null;
  return match ? decodeURIComponent(match[1].replace(/\+/g, " ")) : undefined;
}

type Page = { next?: string | null; results: unknown[] };

/**
 * Every page of a cursor list, first to last:
 * `for await (const page of pages((cursor) => client.GET("/api/v1/me/entries/", { params: { query: { cursor } } })))`.
 */
export async function* pages<R extends Result & { data?: Page }>(
  fetchPage: (cursor: string | undefined) => Promise<R>,
): AsyncGenerator<Exclude<R["data"], undefined>> {
  let cursor: string | undefined;
  do {
    const page = await ok(fetchPage(cursor));
    yield page;
    cursor = cursorOf(page.next);
  } while (cursor !== undefined);
}

// --- one key per user action -------------------------------------------------------------

/** A new Idempotency-Key: 128 random bits (crypto where there is one). */
export function newIdempotencyKey(): string {
  const bytes = new Uint8Array(16);
  // (no globalThis in older mini-program runtimes)
  const g = typeof globalThis === "undefined" ? undefined : globalThis;
  const c = (g as { crypto?: { getRandomValues?: (a: Uint8Array) => Uint8Array } } | undefined)?.crypto;
  if (c?.getRandomValues) c.getRandomValues(bytes);
  else for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(Math.random() * 256);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * One thing the user asked for (one tap on "redeem"): its key is made once and sent with
 * every retry, automatic or the user's second tap, so the server does it at most once.
 * Make a new one for the next action, not for a retry.
 */
export class UserAction {
  readonly key: string;
  constructor(key: string = newIdempotencyKey()) {
    this.key = key;
  }
  /** The header for `params: { header: action.header }`. */
  get header(): { "Idempotency-Key": string } {
    return { "Idempotency-Key": this.key };
  }
}

export interface RetryOptions {
  /** How many tries in all (default 3). */
  attempts?: number;
  /** Milliseconds before the n-th retry (default 200, 800, ...); capped by a server's Retry-After when smaller. */
  delayMs?: (retry: number) => number;
}

function retryable(result: Result): boolean {
  const status = result.response.status;
  if (status === 503) return true;
  return status === 409 && errorDetail(result.error)?.code === "idempotency_in_flight";
}

/**
 * Runs `call` with the action's header, and again with the same header when the network
 * failed, the server was unavailable (503) or the first request is still running (409
 * idempotency_in_flight). Answers the last result; throws the network error when every try failed.
 * A retried write that got through before answers as a replay (see `replayed`).
 */
export async function retrying<R extends Result>(
  action: UserAction,
  call: (header: { "Idempotency-Key": string }) => Promise<R>,
  options: RetryOptions = {},
): Promise<R> {
  const attempts = options.attempts ?? 3;
  const delayMs = options.delayMs ?? ((retry: number) => 200 * 4 ** (retry - 1));
  let lastError: unknown;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    if (attempt > 1) await sleep(delayMs(attempt - 1));
    try {
      const result = await call(action.header);
      if (attempt === attempts || !retryable(result)) return result;
      lastError = undefined;
    } catch (error) {
      // fetch rejects on a network failure (TypeError); anything else is not ours to retry.
      if (!(error instanceof TypeError) || attempt === attempts) throw error;
      lastError = error;
    }
  }
  throw lastError;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// --- tokens ----------------------------------------------------------------------------------

/** A member's sign-in, as the sign-in and refresh endpoints answer it. */
export type Tokens = Pick<Schemas["TokensOut"], "access" | "refresh" | "access_expires_at" | "refresh_expires_at">;

/** Where a member client keeps its tokens (memory, wx storage, localStorage, a keychain). */
export interface TokenStore {
  get(): Tokens | null | Promise<Tokens | null>;
  set(tokens: Tokens | null): void | Promise<void>;
}

export class MemoryTokenStore implements TokenStore {
  private tokens: Tokens | null;
  constructor(tokens: Tokens | null = null) {
    this.tokens = tokens;
  }
  get(): Tokens | null {
    return this.tokens;
  }
  set(tokens: Tokens | null): void {
    this.tokens = tokens;
  }
}

// --- clients ---------------------------------------------------------------------------------

export interface ClientOptions {
  /** The server's origin, e.g. https://loyalty.example.com (paths carry /api/v1/). */
  baseUrl: string;
  /** Accept-Language of every request; a function is asked each time (the user may switch). */
  language?: Language | (() => Language | undefined);
  /** A fetch of your own (the mini-program's wx.request adapter, a test's). */
  fetch?: (request: Request) => Promise<Response>;
  /** The Request class that goes with that fetch, where there is no global one. */
  Request?: typeof Request;
}

export interface MemberClientOptions extends ClientOptions {
  tokens?: TokenStore;
  /** Called when the sign-in ended (a refresh was refused, or sign-out): show the sign-in page. */
  onSignedOut?: () => void;
  /** Refresh this many seconds before the access token expires (default 60). */
  refreshLeewaySeconds?: number;
}

/** Answers that carry a new sign-in, stored as they pass. */
const SIGN_IN_PATHS = new Set<keyof paths>([
  "/api/v1/auth/miniprogram/",
  "/api/v1/auth/otp/sign-in/",
  "/api/v1/auth/refresh/",
]);
/** Calls that must not carry the member's token (a stale one would be refused before they run). */
const PUBLIC_PATHS = new Set<keyof paths>([...SIGN_IN_PATHS, "/api/v1/auth/otp/", "/api/v1/auth/staff-token/"]);
const SIGN_OUT_PATH: keyof paths = "/api/v1/auth/sign-out/";

function languageMiddleware(language: ClientOptions["language"]): Middleware {
  return {
    onRequest({ request }) {
      const value = typeof language === "function" ? language() : language;
      if (value && !request.headers.has("Accept-Language")) request.headers.set("Accept-Language", value);
      return request;
    },
  };
}

function baseClient(options: ClientOptions): LoyaltyClient {
  const client = createClient<paths, "application/json">({
    baseUrl: options.baseUrl,
    ...(options.fetch ? { fetch: options.fetch } : {}),
    ...(options.Request ? { Request: options.Request } : {}),
  });
  if (options.language) client.use(languageMiddleware(options.language));
  return client;
}

/**
 * A client for a member (mini-program, app). Signing in through it stores the tokens;
 * every member call carries the access token, refreshed before it expires and once more
 * when the server says it is no longer valid (401), then the call is sent again.
 */
export function createMemberClient(options: MemberClientOptions): LoyaltyClient & { tokens: TokenStore } {
  const tokens = options.tokens ?? new MemoryTokenStore();
  const leewayMs = (options.refreshLeewaySeconds ?? 60) * 1000;
  const client = baseClient(options);
  const sent = new Map<string, Request>();
  let refreshing: Promise<Tokens | null> | null = null;

  async function signedOut(): Promise<void> {
    await tokens.set(null);
    options.onSignedOut?.();
  }

  // One refresh at a time: a refresh token works once, and sending a used one ends the sign-in.
  function refresh(stale: Tokens): Promise<Tokens | null> {
    refreshing ??= (async () => {
      try {
        const current = await tokens.get();
        if (current && current.access !== stale.access) return current; // someone refreshed already
        if (!current) return null;
        const result = await client.POST("/api/v1/auth/refresh/", { body: { refresh: current.refresh } });
        if (result.data) return result.data; // stored by the middleware on its way through
        if (result.response.status === 401 || result.response.status === 403) await signedOut();
        return null;
      } finally {
        refreshing = null;
      }
    })();
    return refreshing;
  }

  client.use({
    async onRequest({ request, schemaPath, id }) {
      if (PUBLIC_PATHS.has(schemaPath as keyof paths) || request.headers.has("Authorization")) return request;
      let current = await tokens.get();
      if (!current) return request;
      if (Date.parse(current.access_expires_at) - leewayMs <= Date.now()) current = (await refresh(current)) ?? current;
      request.headers.set("Authorization", `Bearer ${current.access}`);
      sent.set(id, request.clone()); // to send again after a refresh
      return request;
    },
    async onResponse({ request, response, schemaPath, id, options: fetchOptions }) {
      const copy = sent.get(id);
      sent.delete(id);
      const path = schemaPath as keyof paths;
      if (SIGN_IN_PATHS.has(path) && response.ok) {
        const body = (await response.clone().json()) as Tokens;
        await tokens.set({
          access: body.access,
          refresh: body.refresh,
          access_expires_at: body.access_expires_at,
          refresh_expires_at: body.refresh_expires_at,
        });
      } else if (path === SIGN_OUT_PATH) {
        await signedOut();
      } else if (response.status === 401 && copy) {
        const used = request.headers.get("Authorization")?.slice("Bearer ".length);
        const fresh = used ? await refresh({ access: used } as Tokens) : null;
        if (fresh) {
          copy.headers.set("Authorization", `Bearer ${fresh.access}`);
          return fetchOptions.fetch(copy);
        }
      }
      return response;
    },
    onError({ id }) {
      sent.delete(id);
    },
  });
  return Object.assign(client, { tokens });
}

/**
 * A client for a till or shop system with a store API key (`sk_...`, made in the admin).
 * Its writes are idempotent by order or refund number, or by `retrying` with a UserAction.
 */
export function createTillClient(options: ClientOptions & { apiKey: string }): LoyaltyClient {
  const client = baseClient(options);
  client.use({
    onRequest({ request }) {
      request.headers.set("Authorization", `Api-Key ${options.apiKey}`);
      return request;
    },
  });
  return client;
}
