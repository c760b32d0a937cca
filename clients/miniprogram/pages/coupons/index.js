// My coupons: the usable ones, with the code the till verifies.
const { client, sdk } = require("../../lib/api");
const { strings } = require("../../lib/i18n");

Page({
  data: { t: {}, coupons: [], error: "" },

  async onShow() {
    this.setData({ t: strings() });
    try {
      this.setData({ coupons: await sdk.ok(client().GET("/api/v1/me/coupons/")), error: "" });
    } catch (error) {
      this.setData({ error: error.message });
    }
  },
});
