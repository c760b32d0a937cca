// Where the mini-program finds the loyalty server (docs/miniprogram.md). The domain must be
// one of the "request legal domains" in the mini-program's console, over HTTPS.
module.exports = {
  baseUrl: "https://loyalty.example.com",
};
