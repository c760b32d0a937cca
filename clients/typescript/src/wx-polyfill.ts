/**
 * The few web classes openapi-fetch needs and a WeChat mini-program does not have
 * (Headers, Request, Response, FormData), small and only as far as the SDK uses them.
 * The mini-program bundle (`make sdk`) injects them in place of the globals; nothing
 * here touches the global object.
 */
type HeadersInit_ = Headers_ | Record<string, string> | [string, string][] | undefined;

class Headers_ {
  private map = new Map<string, string>();
  constructor(init?: HeadersInit_) {
    if (!init) return;
    const entries =
      init instanceof Headers_ ? Array.from(init.entries()) : Array.isArray(init) ? init : Object.entries(init);
    for (const [k, v] of entries) this.append(k, v);
  }
  append(name: string, value: string): void {
    const key = name.toLowerCase();
    const prev = this.map.get(key);
    this.map.set(key, prev === undefined ? String(value) : `${prev}, ${value}`);
  }
  set(name: string, value: string): void {
    this.map.set(name.toLowerCase(), String(value));
  }
  get(name: string): string | null {
    return this.map.get(name.toLowerCase()) ?? null;
  }
  has(name: string): boolean {
    return this.map.has(name.toLowerCase());
  }
  delete(name: string): void {
    this.map.delete(name.toLowerCase());
  }
  forEach(fn: (value: string, name: string) => void): void {
    this.map.forEach((v, k) => fn(v, k));
  }
  entries(): IterableIterator<[string, string]> {
    return this.map.entries();
  }
  [Symbol.iterator](): IterableIterator<[string, string]> {
    return this.map.entries();
  }
}

interface RequestInit_ {
  method?: string;
  headers?: HeadersInit_;
  body?: string | null;
  [key: string]: unknown;
}

class Request_ {
  readonly url: string;
  readonly method: string;
  readonly headers: Headers_;
  readonly bodyText: string | null;
  constructor(input: string | Request_, init: RequestInit_ = {}) {
    const from = typeof input === "string" ? null : input;
    this.url = from ? from.url : input as string;
    this.method = (init.method ?? from?.method ?? "GET").toUpperCase();
    this.headers = new Headers_(init.headers ?? from?.headers);
    const body = init.body !== undefined ? init.body : from ? from.bodyText : null;
    if (body != null && typeof body !== "string") throw new TypeError("The mini-program SDK sends JSON text bodies only.");
    this.bodyText = body ?? null;
  }
  clone(): Request_ {
    return new Request_(this);
  }
  async text(): Promise<string> {
    return this.bodyText ?? "";
  }
  async json(): Promise<unknown> {
    return JSON.parse(await this.text());
  }
}

class Response_ {
  readonly status: number;
  readonly statusText: string;
  readonly headers: Headers_;
  readonly ok: boolean;
  readonly body: null = null;
  private readonly bodyText: string;
  constructor(body?: string | null, init: { status?: number; statusText?: string; headers?: HeadersInit_ } = {}) {
    this.status = init.status ?? 200;
    this.statusText = init.statusText ?? "";
    this.headers = new Headers_(init.headers);
    this.ok = this.status >= 200 && this.status < 300;
    this.bodyText = body ?? "";
  }
  clone(): Response_ {
    return new Response_(this.bodyText, { status: this.status, statusText: this.statusText, headers: this.headers });
  }
  async text(): Promise<string> {
    return this.bodyText;
  }
  async json(): Promise<unknown> {
    return JSON.parse(this.bodyText);
  }
}

/** Never sent by the SDK; openapi-fetch only asks whether a body is one. */
class FormData_ {}

export { FormData_ as FormData, Headers_ as Headers, Request_ as Request, Response_ as Response };
