// Sign in: wx.login, and for a new user the phone-number button (open-type="getPhoneNumber").
const { client, sdk } = require("../../lib/api");
const { strings } = require("../../lib/i18n");

Page({
  data: { t: {}, needPhone: false, busy: false, error: "" },

  onLoad() {
    this.setData({ t: strings() });
  },

  async onSignIn() {
    await this.signIn({});
  },

  // <button open-type="getPhoneNumber" bindgetphonenumber="onPhoneNumber">: detail.code is
  // the phone code the server exchanges for the number (never the number itself).
  async onPhoneNumber(event) {
    const phoneCode = event.detail && event.detail.code;
    if (!phoneCode) {
      this.setData({ error: this.data.t.phoneRefused });
      return;
    }
    await this.signIn({ phone_code: phoneCode });
  },

  async signIn(extra) {
    this.setData({ busy: true, error: "" });
    try {
      const code = await sdk.wxLoginCode(wx); // a code works once: a new one per try
      await sdk.ok(client().POST("/api/v1/auth/miniprogram/", { body: Object.assign({ code }, extra) }));
      wx.reLaunch({ url: "/pages/card/index" });
    } catch (error) {
      if (error instanceof sdk.BadRequestError && error.code === "phone_required") this.setData({ needPhone: true });
      else this.setData({ error: error.message });
    } finally {
      this.setData({ busy: false });
    }
  },
});
