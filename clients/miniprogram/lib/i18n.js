// The mini-program's own strings in English and Chinese; the server's messages come in the
// request's language already (the SDK sends Accept-Language from the WeChat client's language).
const { wxLanguage } = require("./loyalty-sdk");

const STRINGS = {
  en: {
    signIn: "Sign in with WeChat",
    phoneNeeded: "Share your phone number to join",
    sharePhone: "Use my WeChat phone number",
    phoneRefused: "A phone number is needed to join.",
    points: "Points",
    expiringSoon: "expiring soon",
    tier: "Tier",
    noTier: "Member",
    memberCode: "Show this code at the till",
    history: "Points history",
    mall: "Points mall",
    coupons: "My coupons",
    redeem: "Redeem",
    redeemed: "Redeemed",
    loadMore: "Load more",
    noCoupons: "No coupons yet.",
    retry: "The network failed. Tap again to retry; you will not be charged twice.",
  },
  "zh-hans": {
    signIn: "微信一键登录",
    phoneNeeded: "授权手机号以注册会员",
    sharePhone: "使用微信绑定的手机号",
    phoneRefused: "注册会员需要手机号。",
    points: "积分",
    expiringSoon: "即将过期",
    tier: "等级",
    noTier: "会员",
    memberCode: "结账时出示此码",
    history: "积分明细",
    mall: "积分商城",
    coupons: "我的券",
    redeem: "兑换",
    redeemed: "兑换成功",
    loadMore: "加载更多",
    noCoupons: "暂无可用的券。",
    retry: "网络异常，请再点一次重试，不会重复扣积分。",
  },
};

function strings() {
  return STRINGS[wxLanguage(wx)];
}

module.exports = { strings, STRINGS };
