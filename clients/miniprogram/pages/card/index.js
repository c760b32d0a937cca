// The member card: name, tier and progress, points, and the member code the till scans.
const { client, sdk } = require("../../lib/api");
const { itfBars } = require("../../lib/barcode");
const { strings } = require("../../lib/i18n");

Page({
  data: { t: {}, loading: true, error: "", name: "", memberNumber: "", bars: [], tier: "", progress: null, points: 0, expiringSoon: 0, nextExpiry: "" },

  async onShow() {
    this.setData({ t: strings() });
    const api = client();
    if (!(await api.tokens.get())) {
      wx.reLaunch({ url: "/pages/login/index" });
      return;
    }
    try {
      const [me, balances, tier] = await Promise.all([
        sdk.ok(api.GET("/api/v1/me/")),
        sdk.ok(api.GET("/api/v1/me/balances/")),
        sdk.ok(api.GET("/api/v1/me/tier/")),
      ]);
      this.setData({
        loading: false,
        error: "",
        name: me.name,
        memberNumber: me.member_number,
        bars: itfBars(me.member_number),
        tier: me.tier ? me.tier.name : this.data.t.noTier,
        progress: tier,
        points: balances.points.balance,
        expiringSoon: balances.points.expiring_soon,
        nextExpiry: balances.points.next_expiry_date || "",
      });
    } catch (error) {
      this.setData({ loading: false, error: error.message });
    }
  },

  onHistory() {
    wx.navigateTo({ url: "/pages/history/index" });
  },
});
