// The points mall and redeem. One tap is one action with one Idempotency-Key: the SDK retries
// it with that key, and when the outcome stays unknown (the network failed) the next tap
// reuses it, so a redemption is made at most once. A clear answer ends the action.
const { client, outcomeUnknown, sdk } = require("../../lib/api");
const { strings } = require("../../lib/i18n");

Page({
  data: { t: {}, rewards: [], points: 0, busyId: null, error: "" },

  onLoad() {
    this.actions = {}; // reward id -> the UserAction of a redemption whose outcome is unknown
    this.setData({ t: strings() });
    return this.refresh();
  },

  async refresh() {
    try {
      const api = client();
      const [rewards, balances] = await Promise.all([
        sdk.ok(api.GET("/api/v1/rewards/")),
        sdk.ok(api.GET("/api/v1/me/balances/")),
      ]);
      this.setData({ rewards, points: balances.points.balance });
    } catch (error) {
      this.setData({ error: error.message });
    }
  },

  async onRedeem(event) {
    const id = Number(event.currentTarget.dataset.id);
    const action = this.actions[id] || (this.actions[id] = new sdk.UserAction());
    this.setData({ busyId: id, error: "" });
    try {
      const redemption = await sdk.ok(
        sdk.retrying(action, (header) =>
          client().POST("/api/v1/rewards/{id}/redeem/", { params: { path: { id }, header } }),
        ),
      );
      delete this.actions[id];
      wx.showToast({ title: this.data.t.redeemed, icon: "success" });
      await this.refresh();
      return redemption;
    } catch (error) {
      if (outcomeUnknown(error)) {
        this.setData({ error: this.data.t.retry });
      } else {
        delete this.actions[id]; // refused for good (not enough points, out of stock): a new tap is a new action
        this.setData({ error: error.message });
      }
      return null;
    } finally {
      this.setData({ busyId: null });
    }
  },
});
