// The one SDK client of the mini-program: tokens in wx storage, requests through wx.request,
// the sign-in page when the sign-in ends.
const sdk = require("./loyalty-sdk");

function client() {
  const app = getApp();
  if (!app.loyalty) {
    app.loyalty = sdk.createWxMemberClient({
      baseUrl: app.globalData.baseUrl,
      wx,
      onSignedOut: () => wx.reLaunch({ url: "/pages/login/index" }),
    });
  }
  return app.loyalty;
}

/** Whether an error leaves the outcome unknown (the request may have got through): retry with the same key. */
function outcomeUnknown(error) {
  return error instanceof TypeError || error instanceof sdk.UnavailableError;
}

module.exports = { client, outcomeUnknown, sdk };
