"""Product pictures for the demo's rewards, and the shelf (category) each one sits on.

The pictures are ours: drawn by :func:`reward_pictures_draw` with Pillow (shapes and
Pillow's bundled font only), committed under ``static/center/rewards/`` and licensed with
the repository. The demo copies them into the media storage and sets them on its rewards
(:func:`demo_reward_images`); to draw them again:
``python manage.py shell -c "from operations.demo.images import reward_pictures_draw; reward_pictures_draw()"``.
"""

from pathlib import Path

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from rewards.models import Reward, RewardCategory

FOLDER = Path(settings.BASE_DIR) / "static" / "center" / "rewards"
SIZE = (640, 400)
SCALE = 2  # drawn at twice the size and scaled down: smooth edges without anti-aliasing primitives

# Demo reward code (rewards.py names its placeholder ``rewards/demo-<code>.png``) -> shelf.
CATEGORY = {
    "coffee": RewardCategory.FOOD_DRINK,
    "sample-set": RewardCategory.BEAUTY,
    "ten-off": RewardCategory.VOUCHERS,
    "tote": RewardCategory.LIFESTYLE,
    "voucher-50": RewardCategory.VOUCHERS,
    "voucher-100": RewardCategory.VOUCHERS,
    "tumbler": RewardCategory.LIFESTYLE,
    "cinema": RewardCategory.EXPERIENCES,
}


def demo_reward_images() -> int:
    """Give the demo's rewards their product picture and shelf; returns how many changed.

    A demo reward is known by the placeholder picture ``rewards.py`` gave it; a reward staff
    made or changed keeps its own picture. Safe to run twice.
    """
    changed = 0
    for reward in Reward.objects.filter(image__startswith="rewards/demo-"):
        code = Path(reward.image.name).stem.removeprefix("demo-")
        source = FOLDER / f"{code}.png"
        if code not in CATEGORY or not source.exists():
            continue
        name = f"rewards/center-{code}.png"
        if not default_storage.exists(name):
            default_storage.save(name, ContentFile(source.read_bytes()))
        Reward.objects.filter(pk=reward.pk).update(image=name, category=CATEGORY[code])
        changed += 1
    return changed


# --- drawing -----------------------------------------------------------------------------


# DejaVu has the yuan sign; Pillow's bundled font (the fallback) does not.
BOLD_FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"


def _font(size: int) -> ImageFont.FreeTypeFont:
    try:
        return ImageFont.truetype(BOLD_FONT, size * SCALE)
    except OSError:
        return ImageFont.load_default(size=size * SCALE)


def _canvas(top: tuple[int, int, int], bottom: tuple[int, int, int]) -> Image.Image:
    """A studio backdrop: a vertical gradient and a soft floor."""
    width, height = SIZE[0] * SCALE, SIZE[1] * SCALE
    image = Image.new("RGB", (width, height), top)
    draw = ImageDraw.Draw(image)
    for y in range(height):
        t = y / height
        draw.line([(0, y), (width, y)], fill=tuple(int(a + (b - a) * t) for a, b in zip(top, bottom, strict=True)))
    return image


def _shadow(image: Image.Image, box: tuple[float, float, float, float]) -> None:
    """A blurred ellipse under the product, as if it stood on the floor."""
    layer = Image.new("L", image.size, 0)
    ImageDraw.Draw(layer).ellipse([v * SCALE for v in box], fill=110)
    layer = layer.filter(ImageFilter.GaussianBlur(14 * SCALE))
    image.paste((40, 30, 30), mask=layer)


def _s(points):
    return [v * SCALE for v in points]


def _coffee() -> Image.Image:
    image = _canvas((246, 236, 224), (226, 206, 186))
    _shadow(image, (240, 330, 400, 360))
    d = ImageDraw.Draw(image)
    # cup body (a trapezoid), sleeve, lid
    d.polygon(_s([262, 150, 378, 150, 362, 345, 278, 345]), fill=(250, 250, 248))
    d.polygon(_s([270, 215, 370, 215, 364, 285, 276, 285]), fill=(150, 102, 66))
    d.rounded_rectangle(_s([252, 128, 388, 152]), radius=8 * SCALE, fill=(60, 42, 32))
    d.rounded_rectangle(_s([268, 112, 372, 132]), radius=6 * SCALE, fill=(82, 58, 44))
    d.ellipse(_s([302, 234, 338, 266]), outline=(246, 226, 200), width=3 * SCALE)
    # steam
    for x in (296, 320, 344):
        d.arc(_s([x - 12, 36, x + 12, 70]), 200, 340, fill=(200, 180, 165), width=3 * SCALE)
        d.arc(_s([x - 12, 58, x + 12, 92]), 20, 160, fill=(200, 180, 165), width=3 * SCALE)
    # a saucer of beans
    for i, x in enumerate((180, 200, 430, 452, 470)):
        y = 330 - (i % 2) * 10
        d.ellipse(_s([x, y, x + 18, y + 12]), fill=(92, 58, 38))
        d.line(_s([x + 4, y + 6, x + 14, y + 6]), fill=(60, 36, 24), width=2 * SCALE)
    return image


def _samples() -> Image.Image:
    image = _canvas((248, 236, 240), (230, 205, 215))
    _shadow(image, (150, 320, 490, 352))
    d = ImageDraw.Draw(image)
    d.rounded_rectangle(_s([140, 250, 500, 335]), radius=10 * SCALE, fill=(255, 255, 255))
    d.rounded_rectangle(_s([140, 250, 500, 268]), radius=8 * SCALE, fill=(122, 21, 40))
    colours = [(238, 190, 205), (250, 214, 170), (200, 220, 240), (214, 236, 214), (232, 214, 245)]
    for i, colour in enumerate(colours):
        x = 178 + i * 60
        d.rounded_rectangle(
            _s([x, 120, x + 36, 290]), radius=12 * SCALE, fill=colour, outline=(255, 255, 255), width=2 * SCALE
        )
        d.rounded_rectangle(_s([x + 6, 96, x + 30, 126]), radius=5 * SCALE, fill=(176, 138, 62))
        d.rectangle(_s([x + 8, 170, x + 28, 200]), fill=(255, 255, 255))
        d.line(_s([x + 26, 130, x + 26, 270]), fill=(255, 255, 255), width=3 * SCALE)
    return image


def _ticket(text: str, colour: tuple[int, int, int], accent: tuple[int, int, int], back: tuple) -> Image.Image:
    image = _canvas(*back)
    _shadow(image, (130, 310, 510, 345))
    d = ImageDraw.Draw(image)
    # a gift card at a slight angle: drawn flat on its own layer, then rotated
    card = Image.new("RGBA", (400 * SCALE, 240 * SCALE), (0, 0, 0, 0))
    c = ImageDraw.Draw(card)
    c.rounded_rectangle([0, 0, 400 * SCALE - 1, 240 * SCALE - 1], radius=22 * SCALE, fill=colour)
    c.ellipse(_s([250, -80, 470, 140]), fill=tuple(min(255, v + 28) for v in colour))
    c.rounded_rectangle(_s([28, 30, 84, 70]), radius=8 * SCALE, fill=accent)
    c.line(_s([28, 50, 84, 50]), fill=colour, width=2 * SCALE)
    c.text(_s([30, 110]), text, font=_font(62), fill=(255, 255, 255))
    for x in range(28, 372, 18):
        c.ellipse(_s([x, 205, x + 6, 211]), fill=(255, 255, 255, 120))
    card = card.rotate(-6, resample=Image.BICUBIC, expand=True)
    image.paste(card, (120 * SCALE, 70 * SCALE), card)
    del d
    return image


def _tote() -> Image.Image:
    image = _canvas((236, 240, 230), (210, 220, 200))
    _shadow(image, (200, 335, 440, 362))
    d = ImageDraw.Draw(image)
    canvas_colour = (232, 222, 198)
    d.arc(_s([232, 50, 300, 190]), 180, 360, fill=(90, 120, 90), width=10 * SCALE)
    d.arc(_s([340, 50, 408, 190]), 180, 360, fill=(90, 120, 90), width=10 * SCALE)
    d.polygon(_s([212, 120, 428, 120, 446, 345, 194, 345]), fill=canvas_colour)
    d.line(_s([212, 120, 194, 345]), fill=(210, 198, 170), width=3 * SCALE)
    d.rectangle(_s([212, 120, 428, 134]), fill=(214, 204, 178))
    # the brand mark printed on the bag
    d.ellipse(_s([284, 196, 356, 268]), fill=(122, 21, 40))
    d.text(_s([307, 207]), "L", font=_font(44), fill=(255, 255, 255))
    return image


def _tumbler() -> Image.Image:
    image = _canvas((228, 238, 248), (196, 214, 232))
    _shadow(image, (250, 335, 390, 360))
    d = ImageDraw.Draw(image)
    d.polygon(_s([266, 110, 374, 110, 360, 345, 280, 345]), fill=(60, 110, 160))
    d.polygon(_s([280, 110, 296, 110, 290, 345, 284, 345]), fill=(96, 146, 196))
    d.rounded_rectangle(_s([256, 84, 384, 114]), radius=10 * SCALE, fill=(235, 238, 242))
    d.rounded_rectangle(_s([300, 40, 312, 92]), radius=4 * SCALE, fill=(122, 21, 40))
    d.rectangle(_s([276, 200, 366, 236]), fill=(235, 238, 242))
    d.text(_s([290, 202]), "LTD", font=_font(28), fill=(60, 110, 160))
    return image


def _cinema() -> Image.Image:
    image = _canvas((236, 234, 246), (200, 198, 222))
    _shadow(image, (140, 320, 500, 350))
    d = ImageDraw.Draw(image)
    for offset, colour in ((0, (70, 70, 110)), (34, (122, 21, 40))):
        x, y = 150 + offset, 110 + offset
        d.rounded_rectangle(_s([x, y, x + 280, y + 140]), radius=12 * SCALE, fill=colour)
        d.ellipse(_s([x - 14, y + 56, x + 14, y + 84]), fill=(236, 234, 246) if offset == 0 else (214, 212, 232))
        d.ellipse(_s([x + 266, y + 56, x + 294, y + 84]), fill=(236, 234, 246) if offset == 0 else (214, 212, 232))
        d.line(_s([x + 200, y + 12, x + 200, y + 128]), fill=(255, 255, 255), width=2 * SCALE)
    d.text(_s([214, 196]), "ADMIT 2", font=_font(34), fill=(255, 255, 255))
    # a film strip across the corner
    d.rectangle(_s([430, 60, 520, 96]), fill=(29, 34, 48))
    for x in range(436, 516, 14):
        d.rectangle(_s([x, 64, x + 7, 70]), fill=(236, 234, 246))
        d.rectangle(_s([x, 86, x + 7, 92]), fill=(236, 234, 246))
    return image


def reward_pictures_draw(folder: Path = FOLDER) -> list[Path]:
    """Draw every demo reward's picture into ``folder`` (PNG, 640 x 400); returns the files."""
    pictures = {
        "coffee": _coffee,
        "sample-set": _samples,
        "ten-off": lambda: _ticket("-10%", (220, 90, 60), (246, 214, 120), ((250, 236, 228), (236, 206, 192))),
        "tote": _tote,
        "voucher-50": lambda: _ticket("¥50", (200, 60, 60), (246, 214, 120), ((250, 232, 232), (232, 200, 200))),
        "voucher-100": lambda: _ticket("¥100", (176, 138, 62), (250, 236, 190), ((248, 240, 222), (228, 212, 176))),
        "tumbler": _tumbler,
        "cinema": _cinema,
    }
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for code, draw in pictures.items():
        path = folder / f"{code}.png"
        draw().resize(SIZE, Image.LANCZOS).save(path, format="PNG", optimize=True)
        written.append(path)
    return written
