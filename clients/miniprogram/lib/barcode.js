// The member code as an Interleaved 2 of 5 barcode (digits, even length, read by every till
// scanner), drawn as bars in WXML: [{ key, black, width }], widths in narrow-bar units.
const PATTERNS = ["nnwwn", "wnnnw", "nwnnw", "wwnnn", "nnwnw", "wnwnn", "nwwnn", "nnnww", "wnnwn", "nwnwn"];
const WIDE = 3;

function itfBars(digits) {
  if (!/^\d+$/.test(digits) || digits.length % 2) return [];
  const widths = [1, 1, 1, 1]; // start: bar, space, bar, space
  for (let i = 0; i < digits.length; i += 2) {
    const bars = PATTERNS[Number(digits[i])];
    const spaces = PATTERNS[Number(digits[i + 1])];
    for (let k = 0; k < 5; k++) widths.push(bars[k] === "w" ? WIDE : 1, spaces[k] === "w" ? WIDE : 1);
  }
  widths.push(WIDE, 1, 1); // stop: wide bar, space, bar
  return widths.map((width, index) => ({ key: index, black: index % 2 === 0, width }));
}

module.exports = { itfBars };
