// Points history, a page at a time (the list's cursor), with each entry's reason.
const { client, sdk } = require("../../lib/api");
const { strings } = require("../../lib/i18n");

const PAGE_SIZE = 20;

Page({
  data: { t: {}, entries: [], cursor: null, done: false, loading: false, error: "" },

  onLoad() {
    this.setData({ t: strings() });
    return this.loadMore();
  },

  onReachBottom() {
    return this.loadMore();
  },

  async loadMore() {
    if (this.data.loading || this.data.done) return;
    this.setData({ loading: true, error: "" });
    try {
      const query = { currency: "points", page_size: PAGE_SIZE };
      if (this.data.cursor) query.cursor = this.data.cursor;
      const page = await sdk.ok(client().GET("/api/v1/me/entries/", { params: { query } }));
      const cursor = sdk.cursorOf(page.next) || null;
      this.setData({ entries: this.data.entries.concat(page.results), cursor, done: !cursor });
    } catch (error) {
      this.setData({ error: error.message });
    } finally {
      this.setData({ loading: false });
    }
  },
});
