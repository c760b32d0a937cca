"""The member card's code drawn for scanners: a QR code (segno) and a Code 128 barcode.

python-barcode encodes the Code 128 modules (set C for the card's digits); the SVG is drawn
here with a viewBox, so it scales to the card's width and stays crisp on any screen.
"""

import barcode
import segno
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

# Light margin around the bars, in modules: scanners need ten.
QUIET_MODULES = 10


def qr_svg(data: str, *, label: str) -> SafeString:
    """``data`` as an inline QR code (error correction M), labelled for screen readers."""
    qr = segno.make(data, error="m", micro=False)
    svg = qr.svg_inline(scale=5, border=2, dark="#111827", light="#ffffff", omitsize=True)
    return format_html('<div class="qr" role="img" aria-label="{}">{}</div>', label, mark_safe(svg))


def barcode_svg(data: str, *, label: str, height: int = 48) -> SafeString:
    """``data`` as an inline Code 128 barcode: one black rect per run of dark modules."""
    modules = barcode.get("code128", data).build()[0]
    width = len(modules) + 2 * QUIET_MODULES
    rects = []
    position = 0
    while position < len(modules):
        if modules[position] == "1":
            run = position
            while run < len(modules) and modules[run] == "1":
                run += 1
            rects.append(f'<rect x="{position + QUIET_MODULES}" y="0" width="{run - position}" height="{height}"/>')
            position = run
        else:
            position += 1
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" preserveAspectRatio="none" '
        f'shape-rendering="crispEdges"><rect width="{width}" height="{height}" fill="#ffffff"/>'
        f'<g fill="#111827">{"".join(rects)}</g></svg>'
    )
    return format_html('<div class="barcode" role="img" aria-label="{}">{}</div>', label, mark_safe(svg))
